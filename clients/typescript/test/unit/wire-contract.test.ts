// The package against docs/wire-contract.json, which the server's own types generate (tests/Parley.Server.Tests,
// WireContractTests): frame types, payload fields, error codes, close codes and REST objects agree with the server's.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ClientFrameTypes,
  ClientPayloadFields,
  CloseCodes,
  ErrorCodes,
  ObjectFields,
  ServerFrameTypes,
  ServerPayloadFields,
  Subprotocol,
} from '../../src/wire.js';

interface Contract {
  subprotocol: string;
  server_frames: Record<string, string[]>;
  client_frames: Record<string, string[]>;
  error_codes: string[];
  close_codes: Record<string, number>;
  objects: Record<string, string[]>;
}

const contract = JSON.parse(readFileSync(new URL('../../../../docs/wire-contract.json', import.meta.url), 'utf8')) as Contract;
const sorted = (values: Iterable<string>): string[] => [...values].sort();

describe('the wire contract', () => {
  it('names the same subprotocol', () => {
    expect(Subprotocol).toBe(contract.subprotocol);
  });

  it('knows every frame the server sends, and no other', () => {
    expect(sorted(Object.values(ServerFrameTypes))).toEqual(sorted(Object.keys(contract.server_frames)));
    expect(sorted(Object.keys(ServerPayloadFields))).toEqual(sorted(Object.keys(contract.server_frames)));
  });

  it('types every field of every server frame by its wire name', () => {
    for (const [type, fields] of Object.entries(contract.server_frames)) {
      expect(sorted(ServerPayloadFields[type as keyof typeof ServerPayloadFields]), type).toEqual(sorted(fields));
    }
  });

  it('sends only frames and fields the server reads', () => {
    expect(sorted(Object.values(ClientFrameTypes))).toEqual(sorted(Object.keys(contract.client_frames)));
    for (const [type, fields] of Object.entries(ClientPayloadFields)) {
      expect(sorted(fields), type).toEqual(sorted(contract.client_frames[type]!));
    }
  });

  it('has every error code and close code the server uses', () => {
    expect(sorted(Object.values(ErrorCodes))).toEqual(sorted(contract.error_codes));
    const closeCodes = Object.fromEntries(Object.entries(CloseCodes).map(([name, code]) => [name.replace(/[A-Z]/g, (c, i: number) => (i > 0 ? '_' : '') + c.toLowerCase()), code]));
    expect(closeCodes).toEqual(contract.close_codes);
  });

  it('types every REST object and request body with the server\'s fields', () => {
    expect(sorted(Object.keys(ObjectFields))).toEqual(sorted(Object.keys(contract.objects)));
    for (const [name, fields] of Object.entries(contract.objects)) {
      expect(sorted(ObjectFields[name as keyof typeof ObjectFields]), name).toEqual(sorted(fields));
    }
  });
});
