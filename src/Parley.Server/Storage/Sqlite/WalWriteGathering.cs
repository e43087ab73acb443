using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Parley.Server.Storage.Sqlite;

/// <summary>
/// A SQLite VFS (<see cref="Name"/>) that gathers the writes to a write-ahead log between two syncs into few write calls.
/// SQLite writes each WAL frame with two calls (its 24-byte header, then the page): a commit of 30 pages is 60
/// <c>pwrite</c> calls, then an <c>fsync</c>. Through this VFS the frames of a commit are copied into a buffer as SQLite
/// writes them and reach the file just before the sync, in calls of up to <see cref="MaxWriteCall"/> bytes
/// (benchmarks.md, item 27).
/// <para>
/// Only the single writer's connection uses it, and only with <c>synchronous=FULL</c> (SQLite's default, which the
/// store sets on that connection explicitly) and power-safe overwrite (SQLite's default; a <c>psow=0</c> URI turns the
/// gathering off, since SQLite then writes a commit's last padding frame after its sync): every commit syncs the log,
/// and SQLite publishes a commit to readers (the WAL index) only after that sync, so no reader ever looks for a frame
/// still in the buffer. Nothing else writes the log while the store runs (migrations run before the writer opens), and
/// the store closes the writer's connection after a transaction that failed, which writes out what a rolled-back
/// transaction left in the buffer before any other connection could write the log. A commit is as durable
/// as without it: the bytes reach the file before the same <c>fsync</c>, in the same order. What a crash loses is what
/// it lost before: frames of a transaction that had not synced, which recovery ignores (no commit frame after them, or
/// checksums that do not match).
/// </para>
/// <para>
/// Everything else is SQLite's own default VFS: the database file, journals, the shared-memory index and locks are
/// opened by it and used as they are; a log file keeps the default's methods but for the ones that must see the buffer
/// first (close, read, write, truncate, sync, size, file control). A write that does not follow the buffered ones (a
/// new log's header at offset 0, a frame written again), a read, a size query or a buffer above
/// <see cref="MaxBuffered"/> writes the buffer out first, so the file always receives the same bytes in the same order.
/// </para>
/// </summary>
internal static unsafe partial class WalWriteGathering
{
    public const string Name = "parley-wal-gather";

    /// <summary>A buffer larger than this is written out before it grows further (a large transaction).</summary>
    internal const int MaxBuffered = 4 << 20;

    /// <summary>
    /// The most one call hands the default VFS: its Unix write takes less than 128 KiB at a time (SQLite itself never
    /// writes more than a page and a frame header at once). A commit of up to 30 pages of 4 KiB is one call.
    /// </summary>
    internal const int MaxWriteCall = 124 << 10;

    private const int SqliteOk = 0;
    private const int SqliteIoErrWrite = 10 | (3 << 8);
    private const int SqliteOpenWal = 0x00080000;

    private static readonly Lock RegisterLock = new();
    private static Vfs* _base;
    private static Vfs* _vfs;
    private static IoMethods* _baseMethods;
    private static IoMethods* _methods;
    private static int _fileOffset; // where a log file's gathering state sits, after the default VFS's own file

    [ThreadStatic]
    private static long _gatheredWrites;

    [ThreadStatic]
    private static long _writeCalls;

    /// <summary>
    /// For tests: the writes SQLite asked of a log through this VFS on the calling thread, and the write calls they
    /// became (a connection used synchronously runs SQLite on its caller's thread).
    /// </summary>
    public static (long Gathered, long Written) ThreadCounters => (_gatheredWrites, _writeCalls);

    /// <summary>Registers the VFS once per process (not as the default: a connection names it).</summary>
    public static void Register()
    {
        lock (RegisterLock)
        {
            if (_vfs is not null)
            {
                return;
            }

            // Microsoft.Data.Sqlite sets the native library up in its connection's static constructor: first that.
            RuntimeHelpers.RunClassConstructor(typeof(Microsoft.Data.Sqlite.SqliteConnection).TypeHandle);
            var baseVfs = (Vfs*)sqlite3_vfs_find(null);
            if (baseVfs is null)
            {
                throw new InvalidOperationException("SQLite has no default VFS to build on.");
            }

            _base = baseVfs;
            _fileOffset = (baseVfs->SizeOfFile + 7) & ~7;
            var vfs = CopyOf(baseVfs, baseVfs->Version switch
            {
                >= 3 => sizeof(Vfs),
                2 => (int)Marshal.OffsetOf<Vfs>(nameof(Vfs.SetSystemCall)),
                _ => (int)Marshal.OffsetOf<Vfs>(nameof(Vfs.CurrentTimeInt64)),
            });
            vfs->SizeOfFile = _fileOffset + sizeof(Gathered);
            vfs->Next = null;
            vfs->Name = (byte*)Marshal.StringToCoTaskMemUTF8(Name);
            vfs->Open = (nint)(delegate* unmanaged[Cdecl]<Vfs*, byte*, File*, int, int*, int>)&Open;
            var rc = sqlite3_vfs_register(vfs, 0);
            if (rc != SqliteOk)
            {
                throw new InvalidOperationException($"SQLite refused to register the VFS {Name} (error {rc}).");
            }

            _vfs = vfs;
        }
    }

    /// <summary>
    /// A struct of SQLite's in memory of its own (never freed: registered for the process's life), with the first
    /// <paramref name="length"/> bytes copied: as many as the version the original declares has (a shorter struct must
    /// not be read past its end); the rest zero.
    /// </summary>
    private static T* CopyOf<T>(T* original, int length)
        where T : unmanaged
    {
        var copy = (T*)NativeMemory.AllocZeroed((nuint)sizeof(T));
        Buffer.MemoryCopy(original, copy, sizeof(T), length);
        return copy;
    }

    [LibraryImport("e_sqlite3")]
    private static partial nint sqlite3_vfs_find(byte* name);

    [LibraryImport("e_sqlite3")]
    private static partial int sqlite3_vfs_register(Vfs* vfs, int makeDefault);

    [LibraryImport("e_sqlite3")]
    private static partial int sqlite3_uri_boolean(byte* fileName, byte* parameter, int defaultValue);

    private static Gathered* StateOf(File* file) => (Gathered*)((byte*)file + _fileOffset);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Open(Vfs* vfs, byte* name, File* file, int flags, int* outFlags)
    {
        *StateOf(file) = default;
        var rc = ((delegate* unmanaged[Cdecl]<Vfs*, byte*, File*, int, int*, int>)_base->Open)(_base, name, file, flags, outFlags);
        if (rc != SqliteOk || file->Methods is null || (flags & SqliteOpenWal) == 0 || !PowersafeOverwrite(name))
        {
            return rc; // not a log, not opened, or one whose commits end with a write after the sync: the default's file as it is
        }

        var methods = MethodsFor(file->Methods);
        if (methods is not null)
        {
            StateOf(file)->Base = file->Methods;
            file->Methods = methods;
        }

        return rc;
    }

    /// <summary>
    /// Whether SQLite opened this log's database with power-safe overwrite, read from the file name's URI parameters as
    /// SQLite's own Unix VFS reads it for the database file (whose characteristics decide the log's padding), with the
    /// bundled SQLite's default (on). The log's own file cannot tell: SQLite opens it without its URI flag. Without
    /// power-safe overwrite (<c>psow=0</c>) SQLite pads a commit to a sector and writes its last padding frame after the
    /// sync, which the buffer would hold past the moment readers see the commit.
    /// </summary>
    private static bool PowersafeOverwrite(byte* name)
    {
        fixed (byte* parameter = "psow\0"u8)
        {
            return name is null || sqlite3_uri_boolean(name, parameter, 1) != 0;
        }
    }

    /// <summary>The wrapping methods for a log opened with <paramref name="original"/> (made once; null for any other methods table).</summary>
    private static IoMethods* MethodsFor(IoMethods* original)
    {
        lock (RegisterLock)
        {
            if (_methods is null)
            {
                var methods = CopyOf(original, original->Version switch
                {
                    >= 3 => sizeof(IoMethods),
                    2 => (int)Marshal.OffsetOf<IoMethods>(nameof(IoMethods.Fetch)),
                    _ => (int)Marshal.OffsetOf<IoMethods>(nameof(IoMethods.ShmMap)),
                });
                methods->Close = (nint)(delegate* unmanaged[Cdecl]<File*, int>)&Close;
                methods->Read = (nint)(delegate* unmanaged[Cdecl]<File*, byte*, int, long, int>)&Read;
                methods->Write = (nint)(delegate* unmanaged[Cdecl]<File*, byte*, int, long, int>)&Write;
                methods->Truncate = (nint)(delegate* unmanaged[Cdecl]<File*, long, int>)&Truncate;
                methods->Sync = (nint)(delegate* unmanaged[Cdecl]<File*, int, int>)&Sync;
                methods->FileSize = (nint)(delegate* unmanaged[Cdecl]<File*, long*, int>)&FileSize;
                methods->FileControl = (nint)(delegate* unmanaged[Cdecl]<File*, int, void*, int>)&FileControl;
                _baseMethods = original;
                _methods = methods;
            }

            return original == _baseMethods ? _methods : null;
        }
    }

    /// <summary>
    /// Writes the buffer to the file with the default VFS's write, in pieces of at most <see cref="MaxWriteCall"/> bytes, and
    /// empties it. A failure (a full disk) is returned as the default VFS reported it, to the call that needed the bytes
    /// written (a sync fails, so the commit does); what was not written is dropped with the failed transaction.
    /// </summary>
    private static int Flush(File* file, Gathered* state)
    {
        var rc = SqliteOk;
        for (var done = 0; done < state->Length && rc == SqliteOk; done += MaxWriteCall)
        {
            var amount = Math.Min(MaxWriteCall, state->Length - done);
            rc = ((delegate* unmanaged[Cdecl]<File*, byte*, int, long, int>)state->Base->Write)(file, state->Buffer + done, amount, state->Offset + done);
            _writeCalls++;
        }

        state->Length = 0;
        return rc;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Write(File* file, byte* data, int amount, long offset)
    {
        var state = StateOf(file);
        try
        {
            if (state->Length > 0 && (offset != state->Offset + state->Length || state->Length + (long)amount > MaxBuffered))
            {
                // Not the next bytes of the buffer (or the buffer is full): what is buffered goes first, in order.
                var rc = Flush(file, state);
                if (rc != SqliteOk)
                {
                    return rc;
                }
            }

            if (state->Length + amount > state->Capacity)
            {
                // SQLite writes at most a page and its frame header at a time, so this stays within MaxBuffered.
                var needed = state->Length + amount;
                var capacity = Math.Max(needed, Math.Min(MaxBuffered, Math.Max(64 << 10, 2 * needed)));
                state->Buffer = (byte*)NativeMemory.Realloc(state->Buffer, (nuint)capacity);
                state->Capacity = capacity;
            }

            if (state->Length == 0)
            {
                state->Offset = offset;
            }

            Buffer.MemoryCopy(data, state->Buffer + state->Length, state->Capacity - state->Length, amount);
            state->Length += amount;
            _gatheredWrites++;
            return SqliteOk;
        }
        catch (OutOfMemoryException)
        {
            return SqliteIoErrWrite;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Read(File* file, byte* data, int amount, long offset)
    {
        var state = StateOf(file);
        var rc = Flush(file, state);
        return rc != SqliteOk ? rc : ((delegate* unmanaged[Cdecl]<File*, byte*, int, long, int>)state->Base->Read)(file, data, amount, offset);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Sync(File* file, int flags)
    {
        var state = StateOf(file);
        var rc = Flush(file, state);
        return rc != SqliteOk ? rc : ((delegate* unmanaged[Cdecl]<File*, int, int>)state->Base->Sync)(file, flags);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Truncate(File* file, long size)
    {
        var state = StateOf(file);
        var rc = Flush(file, state);
        return rc != SqliteOk ? rc : ((delegate* unmanaged[Cdecl]<File*, long, int>)state->Base->Truncate)(file, size);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int FileSize(File* file, long* size)
    {
        var state = StateOf(file);
        var rc = Flush(file, state);
        return rc != SqliteOk ? rc : ((delegate* unmanaged[Cdecl]<File*, long*, int>)state->Base->FileSize)(file, size);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int FileControl(File* file, int op, void* arg)
    {
        var state = StateOf(file);
        var rc = Flush(file, state);
        return rc != SqliteOk ? rc : ((delegate* unmanaged[Cdecl]<File*, int, void*, int>)state->Base->FileControl)(file, op, arg);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int Close(File* file)
    {
        var state = StateOf(file);
        var flushed = Flush(file, state);
        NativeMemory.Free(state->Buffer);
        var original = state->Base;
        *state = default;
        file->Methods = original;
        var rc = ((delegate* unmanaged[Cdecl]<File*, int>)original->Close)(file);
        return flushed != SqliteOk ? flushed : rc;
    }

    /// <summary><c>sqlite3_file</c>: the default VFS's own file begins with it.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct File
    {
        public IoMethods* Methods;
    }

    /// <summary>A log file's gathering state, after the default VFS's file in the memory SQLite allocates for it.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Gathered
    {
        public IoMethods* Base;
        public byte* Buffer;
        public long Offset;
        public int Length;
        public int Capacity;
    }

    /// <summary><c>sqlite3_vfs</c>, version 3.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Vfs
    {
        public int Version;
        public int SizeOfFile;
        public int MaxPathname;
        public Vfs* Next;
        public byte* Name;
        public nint AppData;
        public nint Open;
        public nint Delete;
        public nint Access;
        public nint FullPathname;
        public nint DlOpen;
        public nint DlError;
        public nint DlSym;
        public nint DlClose;
        public nint Randomness;
        public nint Sleep;
        public nint CurrentTime;
        public nint GetLastError;
        public nint CurrentTimeInt64;
        public nint SetSystemCall;
        public nint GetSystemCall;
        public nint NextSystemCall;
    }

    /// <summary><c>sqlite3_io_methods</c>, version 3.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct IoMethods
    {
        public int Version;
        public nint Close;
        public nint Read;
        public nint Write;
        public nint Truncate;
        public nint Sync;
        public nint FileSize;
        public nint Lock;
        public nint Unlock;
        public nint CheckReservedLock;
        public nint FileControl;
        public nint SectorSize;
        public nint DeviceCharacteristics;
        public nint ShmMap;
        public nint ShmLock;
        public nint ShmBarrier;
        public nint ShmUnmap;
        public nint Fetch;
        public nint Unfetch;
    }
}
