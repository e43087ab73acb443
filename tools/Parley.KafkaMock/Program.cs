using Confluent.Kafka;

// librdkafka's mock Kafka cluster, held open until Ctrl+C or SIGTERM: the real Kafka protocol over TCP on 127.0.0.1,
// in memory, for trying the event stream and for benchmarks on a machine without Kafka (docs/events.md). Not for
// production: nothing is written to disk and everything is gone when it stops.
//
//   dotnet run --project tools/Parley.KafkaMock [-- --brokers 3]
//
// It prints one line, "bootstrap_servers=<host:port,...>", for Events:Kafka:BootstrapServers.
var brokers = 1;
for (var i = 0; i < args.Length; i++)
{
    if (args[i] == "--brokers" && i + 1 < args.Length && int.TryParse(args[i + 1], out var n) && n is >= 1 and <= 9)
    {
        brokers = n;
        i++;
    }
    else
    {
        await Console.Error.WriteLineAsync("usage: Parley.KafkaMock [--brokers 1-9]");
        return 2;
    }
}

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};
using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
    System.Runtime.InteropServices.PosixSignal.SIGTERM,
    context =>
    {
        context.Cancel = true;
        stop.Cancel();
    });

// The cluster lives as long as the client that started it.
using var owner = new AdminClientBuilder(new Dictionary<string, string>
{
    ["test.mock.num.brokers"] = brokers.ToString(System.Globalization.CultureInfo.InvariantCulture),
}).Build();
var metadata = owner.GetMetadata(TimeSpan.FromSeconds(10));
Console.WriteLine("bootstrap_servers=" + string.Join(",", metadata.Brokers.Select(b => $"{b.Host}:{b.Port}")));
try
{
    await Task.Delay(Timeout.Infinite, stop.Token);
}
catch (OperationCanceledException)
{
}

return 0;
