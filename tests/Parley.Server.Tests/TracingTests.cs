using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using Parley.Server.Observability;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// The spans of <see cref="ParleyActivitySource"/>, seen by a listener of the test's own (what an exporter would get):
/// a send with its commit and fan-out, and a WebSocket frame. The listener hears every test of the process, so each
/// test picks out its own spans by their ids.
/// </summary>
public sealed class TracingTests : IAsyncLifetime, IDisposable
{
    private readonly ConcurrentQueue<Activity> _stopped = new();
    private readonly ActivityListener _listener;
    private readonly ParleyFactory _factory = new();

    public TracingTests()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == ParleyActivitySource.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _stopped.Enqueue,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public ValueTask InitializeAsync()
    {
        _factory.StartKestrel();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    public void Dispose() => _listener.Dispose();

    [Fact]
    public async Task SendMessage_SpanWithConversationAndType_ChildSpansForCommitAndFanout_NoContent()
    {
        using var alice = _factory.BoundedApi("alice");
        var conversation = await alice.CreateDirectAsync("bob");

        var message = await alice.SendTextAsync(conversation.Id, "a secret nobody traces");

        var send = Assert.Single(_stopped, a => a.OperationName == ParleyActivitySource.Spans.MessageSend
            && Equals(a.GetTagItem(ParleyActivitySource.Tags.ConversationId), conversation.Id));
        Assert.Equal("text", send.GetTagItem(ParleyActivitySource.Tags.MessageType));
        Assert.Equal(message.Id, send.GetTagItem(ParleyActivitySource.Tags.MessageId));
        var children = _stopped.Where(a => a.ParentSpanId == send.SpanId && a.TraceId == send.TraceId).Select(a => a.OperationName).ToList();
        Assert.Equal([ParleyActivitySource.Spans.Commit, ParleyActivitySource.Spans.Fanout], children);
        var tagged = _stopped.Where(a => a.TraceId == send.TraceId).SelectMany(a => a.TagObjects).Select(t => t.Value?.ToString() ?? string.Empty);
        Assert.DoesNotContain(tagged, value => value.Contains("secret", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SocketFrame_SpanPerFrameWithItsTypeAndConnection()
    {
        await using var socket = await WsClient.ConnectAsync(_factory, "alice");
        var connectionId = socket.Connected.GetProperty("connection_id").GetString();

        await socket.PingAsync();
        await socket.SendAsync("""{"type":"made_up","id":"x"}""");
        await socket.NextErrorAsync("unknown_type", "x");

        var frames = await SpansAsync(a => a.OperationName == ParleyActivitySource.Spans.WebSocketFrame
            && Equals(a.GetTagItem(ParleyActivitySource.Tags.ConnectionId), connectionId), count: 2);
        Assert.Equal(["ping", "unknown"], frames.Select(a => a.GetTagItem(ParleyActivitySource.Tags.FrameType)));
        Assert.Equal("unknown_type", frames[1].GetTagItem(ParleyActivitySource.Tags.ErrorCode));
        // Each frame is a trace of its own, not a child of the socket's long request.
        Assert.All(frames, a => Assert.Equal(default, a.ParentSpanId));
    }

    [Fact]
    public async Task OtlpEndpoint_Configured_TracesAreExported_NotConfigured_NoTracerAtAll()
    {
        await using var exporting = new ParleyFactory(s => s["Telemetry:Otlp:Endpoint"] = "http://127.0.0.1:4317");

        Assert.NotNull(exporting.Services.GetService<TracerProvider>());
        Assert.Null(_factory.Services.GetService<TracerProvider>());
    }

    [Theory]
    [InlineData("http://otel-collector:4317", true)]
    [InlineData("https://collector.example.com/v1/traces", true)]
    [InlineData("otel-collector:4317", false)]
    [InlineData("ftp://otel-collector", false)]
    public void TelemetryOptionsValidator_EndpointMustBeAnHttpUrl(string endpoint, bool valid)
    {
        var options = new TelemetryOptions { Otlp = { Endpoint = new Uri(endpoint, UriKind.RelativeOrAbsolute) } };

        var result = new TelemetryOptionsValidator().Validate(null, options);

        Assert.Equal(valid, result.Succeeded);
    }

    /// <summary>The spans that match, once <paramref name="count"/> of them have ended (a frame's span ends after its reply went out).</summary>
    private async Task<List<Activity>> SpansAsync(Func<Activity, bool> match, int count)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var found = _stopped.Where(match).ToList();
            if (found.Count >= count)
            {
                return found;
            }

            Assert.True(DateTime.UtcNow < deadline, $"{found.Count} of {count} spans ended in time");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }
}
