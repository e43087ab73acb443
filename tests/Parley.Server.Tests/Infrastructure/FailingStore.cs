using System.Reflection;
using System.Runtime.ExceptionServices;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Parley.Server.Storage;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// The server's own store behind a proxy that makes one of its methods (<see cref="Method"/>, by default
/// <see cref="IChatStore.GetStreamPositionAsync"/>) fail while <see cref="Failing"/> is set (with <see cref="Error"/>: by
/// default SQLite's "database is locked", a storage error worth retrying); every other call goes through.
/// </summary>
internal sealed class FailingStore : IAsyncDisposable
{
    private readonly IChatStore _inner;

    private FailingStore(IChatStore inner)
    {
        _inner = inner;
        Store = DispatchProxy.Create<IChatStore, Proxy>();
        ((Proxy)(object)Store).Owner = this;
    }

    public IChatStore Store { get; }

    /// <summary>The server's own store, which never fails: what another instance on the same database would see.</summary>
    public IChatStore Inner => _inner;

    public bool Failing { get => Volatile.Read(ref _failing); set => Volatile.Write(ref _failing, value); }

    private bool _failing;

    /// <summary>The name of the <see cref="IChatStore"/> method that fails (one returning a task).</summary>
    public string Method { get; set; } = nameof(IChatStore.GetStreamPositionAsync);

    /// <summary>The exception each failing call throws.</summary>
    public Func<Exception> Error { get; set; } = () => new SqliteException("database is locked", 5);

    /// <summary>Set: a "failing" call does not fail but takes this long, then goes through (a slow store; methods returning <c>Task&lt;T&gt;</c>).</summary>
    public TimeSpan? Delay { get; set; }

    /// <summary>
    /// When set, a call of <see cref="Method"/> first waits for it on the calling thread, before anything is returned (a
    /// store that completes synchronously, as SQLite's reads do, but slowly), whether or not <see cref="Failing"/> is set.
    /// </summary>
    public ManualResetEventSlim? Gate { get; set; }

    /// <summary>Calls that failed so far.</summary>
    public int Failures => Volatile.Read(ref _failures);

    private int _failures;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _calls = new();

    /// <summary>How many times the server called the store's method named <paramref name="method"/>, failing or not.</summary>
    public int Calls(string method) => _calls.GetValueOrDefault(method);

    /// <summary>Replaces the registered store with the proxy; the real store is still disposed with the server.</summary>
    public static void Install(IServiceCollection services)
    {
        var original = services.Last(d => d.ServiceType == typeof(IChatStore));
        services.Remove(original);
        services.AddSingleton(provider => new FailingStore((IChatStore)original.ImplementationFactory!(provider)));
        services.AddSingleton(provider => provider.GetRequiredService<FailingStore>().Store);
    }

    public async ValueTask DisposeAsync()
    {
        switch (_inner)
        {
            case IAsyncDisposable asyncDisposable:
                await asyncDisposable.DisposeAsync();
                break;
            case IDisposable disposable:
                disposable.Dispose();
                break;
        }
    }

    private static object FailedTask(Type returnType, Exception error) =>
        returnType == typeof(Task)
            ? Task.FromException(error)
            : typeof(Task).GetMethods().Single(m => m.Name == nameof(Task.FromException) && m.IsGenericMethod)
                .MakeGenericMethod(returnType.GetGenericArguments()[0]).Invoke(null, [error])!;

    // Not sealed: DispatchProxy derives the proxy's type from it.
#pragma warning disable CA1852
    internal class Proxy : DispatchProxy
#pragma warning restore CA1852
    {
        private static async Task<T> DelayedAsync<T>(Func<object> call, TimeSpan delay)
        {
            await Task.Delay(delay);
            return await (Task<T>)call();
        }

        public FailingStore Owner { get; set; } = null!;

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            Owner._calls.AddOrUpdate(targetMethod!.Name, 1, (_, n) => n + 1);
            if (targetMethod!.Name == Owner.Method && Owner.Gate is { } gate)
            {
                gate.Wait(TimeSpan.FromSeconds(30));
            }

            if (targetMethod.Name == Owner.Method && Owner.Failing)
            {
                Interlocked.Increment(ref Owner._failures);
                if (Owner.Delay is { } delay)
                {
                    var inner = Owner._inner;
                    return typeof(Proxy).GetMethod(nameof(DelayedAsync), BindingFlags.NonPublic | BindingFlags.Static)!
                        .MakeGenericMethod(targetMethod.ReturnType.GetGenericArguments()[0])
                        .Invoke(null, [new Func<object>(() => targetMethod.Invoke(inner, args)!), delay])!;
                }

                return FailedTask(targetMethod.ReturnType, Owner.Error());
            }

            try
            {
                return targetMethod.Invoke(Owner._inner, args);
            }
            catch (TargetInvocationException ex) when (ex.InnerException is not null)
            {
                ExceptionDispatchInfo.Throw(ex.InnerException);
                throw;
            }
        }
    }
}
