using System.Diagnostics;
using Parley.Bench.Client;

namespace Parley.Bench.Scenarios;

/// <summary>
/// Opens the connections of a set of devices open-loop: device k's connect is due at start + k / rate whether or
/// not earlier connects have finished, and its latency runs from that intended time to the <c>connected</c> frame.
/// </summary>
internal static class Connector
{
    public static async Task ConnectAllAsync(
        RunContext context, IReadOnlyList<Device> devices, IFrameSink sink, double rate, long start, bool acks, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(devices);
        var schedule = new Schedule(new ScheduleSegment(0, rate, devices.Count, Measured: true));
        var connects = new Task[devices.Count];
        await SendScheduler.RunAsync(
            schedule, start,
            k => connects[k] = ConnectOneAsync(context, devices[(int)k], sink, schedule.IntendedTimestamp(start, k), acks, cancellationToken),
            cancellationToken);
        await Task.WhenAll(connects);
    }

    private static async Task ConnectOneAsync(
        RunContext context, Device device, IFrameSink sink, long intended, bool acks, CancellationToken cancellationToken)
    {
        // Run the connect off the scheduler's thread: its synchronous start (socket, handshake request) would delay the next one.
        await Task.Yield();
        context.Connections.Attempt(intended);
        var connection = new Connection(device, sink, context.Content);
        try
        {
            var connected = await connection.ConnectAsync(RunContext.SocketUri(device.Identity, acks, device.Cursor), context.Network.SocketInvoker, cancellationToken);
            context.Connections.Connected(intended, connected);
        }
        catch (ConnectFailedException e)
        {
            context.Connections.Fail();
            context.Errors.Add(e.Code);
            device.Connection = null;
            connection.Dispose();
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            context.Connections.Fail();
            context.Errors.Add("connect_timeout");
            device.Connection = null;
            connection.Dispose();
        }
    }

    /// <summary>Closes every open connection of <paramref name="devices"/> with 1000, a bounded number at a time (a set-up cut short leaves gaps).</summary>
    public static async Task CloseAllAsync(IReadOnlyList<Device?> devices)
    {
        ArgumentNullException.ThrowIfNull(devices);
        await Parallel.ForEachAsync(
            devices.Where(d => d?.Connection is not null),
            new ParallelOptions { MaxDegreeOfParallelism = 256 },
            async (device, _) => await device!.Connection!.CloseAsync(TimeSpan.FromSeconds(5)));
    }

    /// <summary>The timestamp <paramref name="seconds"/> after <paramref name="start"/>.</summary>
    public static long At(long start, double seconds) => start + (long)(seconds * Stopwatch.Frequency);
}
