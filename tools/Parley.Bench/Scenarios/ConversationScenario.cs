using System.Diagnostics;
using Parley.Bench.Client;
using Parley.Bench.Options;
using Parley.Bench.Reporting;

namespace Parley.Bench.Scenarios;

/// <summary>
/// chat and group: conversations of <c>membersPerConversation</c> online users (direct pairs, or groups), every
/// user with one WebSocket. Message i goes to conversation i mod n, from its members in turn, over the sender's
/// socket (<c>send_message</c>) or over REST; it must reach every other member's socket.
/// </summary>
internal sealed class ConversationScenario : IScenario
{
    private readonly RunContext _context;
    private readonly int _members;
    private readonly int _conversations;
    private readonly Device[] _devices;
    private readonly MessageLedger _ledger;
    private readonly RestSender? _rest;
    private long _start;

    public ConversationScenario(RunContext context, int membersPerConversation)
    {
        _context = context;
        _members = membersPerConversation;
        _conversations = context.Plan.UnitCount;
        _devices = new Device[_conversations * _members];
        var options = context.Options;
        _ledger = new MessageLedger(
            Schedule.WarmupThenMeasured(context.Plan.Rate, options.WarmupSeconds, options.DurationSeconds), membersPerConversation - 1, context.Errors, context.Connections);
        if (options.Transport == Transport.Rest)
        {
            _rest = new RestSender(context.Network.Http, _ledger, context.Content, options.HttpConnections);
        }
    }

    private bool IsGroup => _context.Options.Scenario == ScenarioKind.Group;

    private bool Acks => _context.Options.AckIntervalMs > 0;

    public async Task SetUpAsync(CancellationToken cancellationToken)
    {
        var identities = new Identity[_devices.Length];
        for (var c = 0; c < _conversations; c++)
        {
            for (var m = 0; m < _members; m++)
            {
                identities[c * _members + m] = _context.Identities.Create("u", (_context.Plan.FirstUnit + c) * _members + m, _context.Plan.FirstUnit + c);
            }
        }

        _context.Log($"creating {_conversations} {(IsGroup ? $"groups of {_members}" : "direct conversations")} for {_devices.Length} users");
        await RestSetup.ForEachAsync(_conversations, _context.Options.HttpConnections, async (c, ct) =>
        {
            var members = identities.AsMemory(c * _members, _members).ToArray();
            var conversation = IsGroup
                ? await RestSetup.GroupAsync(_context.Network.Http, members, $"{_context.Options.RunId} group {_context.Plan.FirstUnit + c}", ct)
                : await RestSetup.DirectAsync(_context.Network.Http, members[0], members[1], ct);
            for (var m = 0; m < _members; m++)
            {
                var index = c * _members + m;
                _devices[index] = new Device(index, identities[index], [conversation]);
            }
        }, cancellationToken);

        _context.Log($"connecting {_devices.Length} sockets at {_context.Plan.ConnectRate:0.#}/s");
        await Connector.ConnectAllAsync(_context, _devices, _ledger, _context.Plan.ConnectRate, Stopwatch.GetTimestamp(), acks: Acks, cancellationToken);
        if (_context.Connections.Failed > 0)
        {
            throw new SetupException(
                $"{_context.Connections.Failed} of {_devices.Length} connections failed ({string.Join(", ", _context.Errors.Snapshot().Select(e => $"{e.Key}: {e.Value}"))})");
        }
    }

    public async Task RunAsync(long start, CancellationToken cancellationToken)
    {
        var options = _context.Options;
        _start = start;
        _ledger.SetTimes(start, Connector.At(start, options.WarmupSeconds), Connector.At(start, options.WarmupSeconds + options.DurationSeconds));
        using var stopRest = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var rest = _rest?.RunAsync(stopRest.Token) ?? Task.CompletedTask;
        var acks = Acks ? Acknowledger.RunAsync(_devices, TimeSpan.FromMilliseconds(options.AckIntervalMs), stopRest.Token) : Task.CompletedTask;

        await SendScheduler.RunAsync(_ledger.Schedule, start, Fire, cancellationToken);
        _rest?.Complete();

        var deadline = Connector.At(start, _ledger.Schedule.LastIntendedSeconds + options.GraceSeconds);
        while (!_ledger.Settled && Stopwatch.GetTimestamp() < deadline)
        {
            await Task.Delay(20, cancellationToken);
        }

        await stopRest.CancelAsync();
        await Task.WhenAll(rest, acks);
    }

    private void Fire(long index)
    {
        var conversation = (int)(index % _conversations);
        var member = (int)(index / _conversations % _members);
        var sender = _devices[conversation * _members + member];
        _ledger.Offer(index, _members - 1);
        if (_rest is not null)
        {
            _rest.Enqueue(sender.Identity, sender.ConversationId(0), index);
        }
        else if (sender.Connection is not { } connection || !connection.Enqueue(new Outbound(OutboundKind.Message, index, 0)))
        {
            _ledger.OnError("socket_closed", index);
        }
    }

    public ProgressSnapshot Snapshot()
    {
        var options = _context.Options;
        var elapsed = _start == 0 ? 0 : RunContext.Since(_start);
        var phase = _start == 0 ? "set-up" : elapsed < options.WarmupSeconds ? "warm-up" : elapsed < options.WarmupSeconds + options.DurationSeconds ? "measure" : "grace";
        return new ProgressSnapshot(
            phase, Math.Max(0, elapsed), _ledger.Sent, _ledger.AcknowledgedCount, _ledger.Delivered, _ledger.InFlight, _context.Errors.Total,
            _context.Connections.Open, LatencyHistogram.Summarize(_ledger.Latency.Snapshot())?.P99);
    }

    public BenchResult Result() => Results.Messaging(_context, _ledger, _context.Options.DurationSeconds, reconnect: null);

    public async ValueTask DisposeAsync() => await Connector.CloseAllAsync(_devices);
}

/// <summary>Set-up could not be completed (the server refused or failed); the run exits with 4.</summary>
internal sealed class SetupException(string message, Exception? inner = null) : Exception(message, inner);
