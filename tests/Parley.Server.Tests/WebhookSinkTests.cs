using System.Collections.Concurrent;
using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;
using static Parley.Server.Tests.Infrastructure.MembershipCalls;

namespace Parley.Server.Tests;

/// <summary>
/// Webhook delivery (docs/events.md) against a real HTTP receiver on a loopback port: signed records in stream order,
/// failed posts retried with back-off without anything overtaking them, a record refused every time dead-lettered while
/// delivery goes on, a redirect or a dropped connection counted as a refusal, an endpoint that cannot be reached
/// reported as down (nothing dead-lettered, nothing posted twice on the retry), and the endpoint's type filter.
/// </summary>
public sealed class WebhookSinkTests : IAsyncLifetime
{
    private const string Secret = "webhook-secret-0123456789";
    private readonly Receiver _receiver = new();
    private ParleyFactory? _factory;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => _receiver.StartAsync();

    public async ValueTask DisposeAsync()
    {
        if (_factory is not null)
        {
            await _factory.DisposeAsync();
        }

        await _receiver.DisposeAsync();
    }

    private ParleyFactory Server(params (string Key, string Value)[] extra)
    {
        _factory = new ParleyFactory(settings =>
        {
            settings["Events:PollInterval"] = "00:00:00.010";
            settings["Events:Webhooks:hooks:Url"] = _receiver.Url;
            settings["Events:Webhooks:hooks:Secret"] = Secret;
            settings["Events:Webhooks:hooks:InitialBackoff"] = "00:00:00.010";
            settings["Events:Webhooks:hooks:MaxBackoff"] = "00:00:00.040";
            settings["Events:Webhooks:hooks:MaxAttempts"] = "4";
            foreach (var (key, value) in extra)
            {
                settings[key] = value;
            }
        });
        return _factory;
    }

    [Fact]
    public async Task Webhook_RecordsArriveSignedAndInOrder()
    {
        var factory = Server();
        var alice = factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));
        for (var i = 0; i < 5; i++)
        {
            await alice.SendTextAsync(conversation.Id, $"m{i}");
        }

        var received = await _receiver.WaitForAsync(r => r.Count(x => x.Type == "message.created") >= 5);

        Assert.Equal(Enumerable.Range(1, 6).Select(i => (long)i), received.Select(r => r.Json.GetProperty("seq").GetInt64()));
        foreach (var post in received)
        {
            Assert.Equal(post.Json.GetProperty("event_id").GetString(), post.EventId);
            Assert.Equal(post.Json.GetProperty("type").GetString(), post.Type);
            var parts = post.Signature.Split(',').Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
            var timestamp = long.Parse(parts["t"], CultureInfo.InvariantCulture);
            Assert.InRange(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - timestamp, -5, 300); // inside a receiver's replay window
            var expected = Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes($"{parts["t"]}.{post.Body}")));
            Assert.Equal(expected, parts["v1"]);
            // The verification docs/events.md gives receivers, as written there.
            Assert.True(VerifyAsDocumented(post.Signature, Encoding.UTF8.GetBytes(post.Body), Encoding.UTF8.GetBytes(Secret), DateTimeOffset.UtcNow));
            Assert.False(VerifyAsDocumented(post.Signature, Encoding.UTF8.GetBytes(post.Body + " "), Encoding.UTF8.GetBytes(Secret), DateTimeOffset.UtcNow));
            Assert.False(VerifyAsDocumented(post.Signature, Encoding.UTF8.GetBytes(post.Body), Encoding.UTF8.GetBytes(Secret), DateTimeOffset.UtcNow.AddMinutes(10)));
            // Another secret does not verify: the receiver can tell a forged post.
            Assert.NotEqual(
                Convert.ToHexStringLower(HMACSHA256.HashData("another-secret-0123456"u8.ToArray(), Encoding.UTF8.GetBytes($"{parts["t"]}.{post.Body}"))),
                parts["v1"]);
        }
    }

    /// <summary>Three messages in a new conversation (seqs 1 to 4 with its creation), then the sink's failure once reported.</summary>
    private static async Task<string?> SendThreeUntilTheSinkFailsAsync(ParleyFactory factory)
    {
        var alice = factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));
        for (var i = 0; i < 3; i++)
        {
            await alice.SendTextAsync(conversation.Id, $"m{i}");
        }

        var state = factory.Services.GetRequiredService<Parley.Server.Events.EventStreamStatus>().For("webhook:hooks");
        for (var i = 0; i < 400 && state.LastFailure is null; i++)
        {
            await Task.Delay(25, Ct);
        }

        return state.LastFailure;
    }

    /// <summary>The receiver's check in docs/events.md, copied from there.</summary>
    private static bool VerifyAsDocumented(string header, byte[] body, byte[] secret, DateTimeOffset now)
    {
        var parts = header.Split(',').Select(p => p.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1]);
        if (!parts.TryGetValue("t", out var t) || !parts.TryGetValue("v1", out var v1) || !long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
            || Math.Abs(now.ToUnixTimeSeconds() - seconds) > 300)
        {
            return false;
        }

        var expected = HMACSHA256.HashData(secret, Encoding.ASCII.GetBytes(t + ".").Concat(body).ToArray());
        return CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Convert.ToHexStringLower(expected)), Encoding.ASCII.GetBytes(v1));
    }

    [Fact]
    public async Task Webhook_FailedPosts_RetriedWithBackoff_NothingOvertakes()
    {
        _receiver.FailFirstAttempts = 2;
        var factory = Server();
        var alice = factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));
        for (var i = 0; i < 3; i++)
        {
            await alice.SendTextAsync(conversation.Id, $"m{i}");
        }

        var received = await _receiver.WaitForAsync(r => r.Count(x => x.Type == "message.created") >= 3);

        // Each record was refused twice, then accepted; the next one was not tried before.
        Assert.Equal(Enumerable.Range(1, 4).Select(i => (long)i), received.Select(r => r.Json.GetProperty("seq").GetInt64()));
        var attempts = _receiver.Attempts.ToList();
        Assert.Equal(received.SelectMany(r => Enumerable.Repeat(r.EventId, 3)), attempts.Take(12));
    }

    [Fact]
    public async Task Webhook_ARecordRefusedEveryTime_IsDeadLettered_AndDeliveryGoesOn()
    {
        _receiver.Refuse = body => body.Contains("poison", StringComparison.Ordinal);
        var factory = Server();
        using var deadLetters = new Microsoft.Extensions.Diagnostics.Metrics.Testing.MetricCollector<long>(
            factory.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), Parley.Server.Observability.ParleyMetrics.MeterName,
            "parley.events.dead_letters");
        var alice = factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));
        var poison = await alice.SendTextAsync(conversation.Id, "poison");
        await alice.SendTextAsync(conversation.Id, "fine");

        var received = await _receiver.WaitForAsync(r => r.Any(x => x.Body.Contains("fine", StringComparison.Ordinal)));

        Assert.DoesNotContain(received, r => r.Body.Contains("poison", StringComparison.Ordinal));
        Assert.Equal(4, _receiver.Attempts.Count(id => id == _receiver.RefusedIds.Single()));
        var letter = Assert.Single(await factory.Services.GetRequiredService<IChatStore>().ListDeadLettersAsync("webhook:hooks", Ct));
        Assert.Equal("message.created", letter.Type);
        Assert.Equal("HTTP 400", letter.Error);
        Assert.Contains(poison.Id.ToString(), letter.Record, StringComparison.Ordinal);
        var counted = Assert.Single(deadLetters.GetMeasurementSnapshot());
        Assert.Equal(1, counted.Value);
        Assert.Equal("webhook:hooks", counted.Tags["sink"]);
    }

    [Fact]
    public async Task Webhook_EventTypes_OnlyThoseAreSent()
    {
        var factory = Server(("Events:Webhooks:hooks:EventTypes:0", "message.created"), ("Events:Webhooks:hooks:EventTypes:1", "notification.message"));
        var alice = factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));
        await alice.SendTextAsync(conversation.Id, "one");

        var received = await _receiver.WaitForAsync(r => r.Any(x => x.Type == "notification.message") && r.Any(x => x.Type == "message.created"));
        await Task.Delay(200, Ct);

        Assert.Equal(["message.created", "notification.message"], _receiver.Received.Select(r => r.Type));
    }

    [Fact]
    public async Task Webhook_ARedirect_IsARefusalNotADelivery()
    {
        var factory = Server(("Events:Webhooks:hooks:Url", _receiver.Url.Replace("/hook", "/moved", StringComparison.Ordinal)));
        var alice = factory.BoundedApi(NewUser("alice"));
        await alice.CreateDirectAsync(NewUser("bob"));
        var store = factory.Services.GetRequiredService<IChatStore>();

        IReadOnlyList<DeadLetter> letters = [];
        for (var i = 0; i < 400 && letters.Count == 0; i++)
        {
            await Task.Delay(25, Ct);
            letters = await store.ListDeadLettersAsync("webhook:hooks", Ct);
        }

        // A POST redirected with 302 would have become a GET to the landing page, whose 200 counted as delivered.
        Assert.Equal("HTTP 302", Assert.Single(letters).Error);
        Assert.Equal(0, _receiver.LandingVisits);
    }

    [Fact]
    public async Task Webhook_EndpointUnreachable_NothingDeadLettered_SinkReportedFailing_ThenEveryRecordDeliveredInOrder()
    {
        // Nothing listens on the endpoint's port until the test starts a receiver there.
        var port = TestServerSettings.FreePort();
        var factory = Server(("Events:Webhooks:hooks:Url", $"http://127.0.0.1:{port}/hook"));

        Assert.StartsWith("Webhook hooks cannot be reached", await SendThreeUntilTheSinkFailsAsync(factory), StringComparison.Ordinal);
        await using var later = new Receiver();
        await later.StartAsync(port);

        await later.WaitForAsync(r => r.Count(x => x.Type == "message.created") >= 3);
        await Task.Delay(200, Ct);

        Assert.Equal(Enumerable.Range(1, 4).Select(i => (long)i), later.Received.Select(r => r.Json.GetProperty("seq").GetInt64()));
        Assert.Empty(await factory.Services.GetRequiredService<IChatStore>().ListDeadLettersAsync("webhook:hooks", Ct));
    }

    [Fact]
    public async Task Webhook_Concurrency_ConversationsSideBySide_EachInItsOrder()
    {
        // Answers take 0-50 ms at random: records of one conversation posted side by side would arrive out of order.
        var random = new Random(7);
        _receiver.LatencyOf = () => TimeSpan.FromMilliseconds(random.Next(0, 50));
        _receiver.HoldFirstUntilAnother = true; // shows that two POSTs run at once, however busy the machine
        var factory = Server(("Events:Webhooks:hooks:Concurrency", "8"));
        var alice = factory.BoundedApi(NewUser("alice"));
        var conversations = new List<Guid>();
        for (var c = 0; c < 2; c++)
        {
            conversations.Add((await alice.CreateDirectAsync(NewUser("bob"))).Id);
        }

        for (var i = 0; i < 8; i++)
        {
            foreach (var conversation in conversations)
            {
                await alice.SendTextAsync(conversation, $"m{i}");
            }
        }

        var received = await _receiver.WaitForAsync(r => r.Count(x => x.Type == "message.created") >= 16);

        foreach (var conversation in conversations)
        {
            var seqs = received.Where(r => r.Json.GetProperty("conversation_id").GetGuid() == conversation).Select(r => r.Json.GetProperty("seq").GetInt64()).ToList();
            Assert.Equal(Enumerable.Range(1, 9).Select(i => (long)i), seqs); // created, then the eight messages, in order
        }

        // The two conversations went side by side, and only they: one POST at a time within each.
        Assert.Equal(2, _receiver.MostInFlight);
    }

    [Fact]
    public async Task Webhook_DefaultConcurrency_OnePostAtATime()
    {
        _receiver.LatencyOf = () => TimeSpan.FromMilliseconds(20);
        var factory = Server();
        var alice = factory.BoundedApi(NewUser("alice"));
        for (var c = 0; c < 3; c++)
        {
            var conversation = await alice.CreateDirectAsync(NewUser("bob"));
            await alice.SendTextAsync(conversation.Id, "m");
        }

        await _receiver.WaitForAsync(r => r.Count(x => x.Type == "message.created") >= 3);

        Assert.Equal(1, _receiver.MostInFlight);
    }

    [Fact]
    public async Task Webhook_EndpointAnswering503_IsAnOutage_NothingDeadLettered_ThenEveryRecordDeliveredInOrder()
    {
        _receiver.Unavailable = true; // as a load balancer answers while the receiver's app is being deployed
        var factory = Server();

        Assert.Equal("Webhook hooks is unavailable: HTTP 503", await SendThreeUntilTheSinkFailsAsync(factory));
        _receiver.Unavailable = false;

        var received = await _receiver.WaitForAsync(r => r.Count(x => x.Type == "message.created") >= 3);
        Assert.Equal(Enumerable.Range(1, 4).Select(i => (long)i), received.Select(r => r.Json.GetProperty("seq").GetInt64()));
        Assert.Empty(await factory.Services.GetRequiredService<IChatStore>().ListDeadLettersAsync("webhook:hooks", Ct));
    }

    [Fact]
    public async Task Publish_NoAnswerWithinTheTimeout_IsAnOutage_TheBatchFailsAndNothingIsDeadLettered()
    {
        // A host that is gone or a firewall that drops packets: connecting never finishes.
        var handler = new ScriptedHandler { Hang = _ => true };
        var options = new Parley.Server.Events.WebhookOptions { MaxAttempts = 2, InitialBackoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(1), Timeout = TimeSpan.FromMilliseconds(100) };
        // No store: a dead letter would fail with a NullReferenceException, not the sink's own exception.
        var (sink, http) = DirectSink(handler, options, TimeProvider.System);
        using var _ = http;

        var failed = await Assert.ThrowsAsync<Parley.Server.Events.EventSinkException>(() => sink.PublishAsync([Record(1)], Ct));

        Assert.Equal("Webhook hooks cannot be reached: no answer within 0.1 s", failed.Message);
        Assert.Equal(["e1", "e1"], handler.Posted);
    }

    [Theory]
    [InlineData(401, false)] // the secret changed on one side only
    [InlineData(403, false)]
    [InlineData(404, false)] // a wrong URL
    [InlineData(400, true)] // the receiver refuses this record
    [InlineData(422, true)]
    [InlineData(500, true)]
    public async Task Publish_AnAnswerAboutTheEndpoint_IsAnOutage_OneAboutTheRecord_IsDeadLettered(int status, bool deadLettered)
    {
        var handler = new ScriptedHandler { Status = _ => (System.Net.HttpStatusCode)status };
        var options = new Parley.Server.Events.WebhookOptions { MaxAttempts = 2, InitialBackoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(1) };
        var letters = DispatchProxy.Create<IChatStore, DeadLetterStore>();
        var (sink, http) = DirectSink(handler, options, TimeProvider.System, letters);
        using var _ = http;

        var publishing = sink.PublishAsync([Record(1)], Ct);

        if (deadLettered)
        {
            await publishing;
            Assert.Equal($"HTTP {status}", Assert.Single(((DeadLetterStore)(object)letters).Letters).Error);
        }
        else
        {
            var failed = await Assert.ThrowsAsync<Parley.Server.Events.EventSinkException>(() => publishing);
            Assert.Equal($"Webhook hooks is unavailable: HTTP {status}", failed.Message);
            Assert.Empty(((DeadLetterStore)(object)letters).Letters);
        }

        Assert.Equal(["e1", "e1"], handler.Posted);
    }

    [Theory]
    [InlineData(30, 1, 30)] // the endpoint asks for 30 s: longer than the back-off (1 ms), so 30 s
    [InlineData(0, 10_000, 10)] // it asks for nothing (Retry-After: 0, or a date already past): the back-off, 10 s
    public async Task Publish_UnavailableWithRetryAfter_WaitsTheLongerOfWhatTheEndpointAskedAndTheBackoff(int askedSeconds, int backoffMs, int expectedSeconds)
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        var handler = new ScriptedHandler
        {
            Status = n => n == 1 ? (System.Net.HttpStatusCode)429 : System.Net.HttpStatusCode.NoContent, RetryAfter = TimeSpan.FromSeconds(askedSeconds),
        };
        var options = new Parley.Server.Events.WebhookOptions { MaxAttempts = 3, InitialBackoff = TimeSpan.FromMilliseconds(backoffMs), MaxBackoff = TimeSpan.FromMinutes(1) };
        var (sink, http) = DirectSink(handler, options, clock);
        using var _ = http;

        var publishing = sink.PublishAsync([Record(1)], Ct);
        await WaitUntilAsync(() => handler.PostCount == 1);
        await Task.Delay(200, Ct); // for the sink to set its wait on the clock
        // A second at a time, giving the sink a moment after each to post again.
        var advanced = 0;
        while (handler.PostCount == 1 && advanced < 120)
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            advanced++;
            for (var i = 0; i < 10 && handler.PostCount == 1; i++)
            {
                await Task.Delay(10, Ct);
            }
        }

        await publishing.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(["e1", "e1"], handler.Posted);
        // The second post came when the wait was over (one second later at most, on a machine too busy to post within 0.1 s).
        Assert.InRange(advanced, expectedSeconds, expectedSeconds + 1);
    }

    [Fact]
    public async Task Publish_OutagesThenARefusal_TheRefusalAloneDoesNotDeadLetter()
    {
        // A receiver being deployed: unavailable three times, then its new instance refuses once while it warms up.
        var handler = new ScriptedHandler { Status = n => n <= 3 ? System.Net.HttpStatusCode.ServiceUnavailable : n == 4 ? System.Net.HttpStatusCode.InternalServerError : System.Net.HttpStatusCode.NoContent };
        var options = new Parley.Server.Events.WebhookOptions { MaxAttempts = 4, InitialBackoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(1) };
        // No store: a dead letter would fail with a NullReferenceException.
        var (sink, http) = DirectSink(handler, options, TimeProvider.System);
        using var _ = http;

        await sink.PublishAsync([Record(1)], Ct);

        Assert.Equal(["e1", "e1", "e1", "e1", "e1"], handler.Posted);
    }

    [Fact]
    public async Task Publish_ARecordThatCrashesTheEndpoint_RefusalsCountAcrossTheBatchesOutagesFailed()
    {
        // Each crash on the record (500) is followed by the endpoint restarting (503, 503): the outages failed every batch
        // first, and the refusals counted within one batch started from nothing in the next, so it was never dead-lettered.
        var handler = new ScriptedHandler { Status = n => n % 3 == 1 ? System.Net.HttpStatusCode.InternalServerError : System.Net.HttpStatusCode.ServiceUnavailable };
        var options = new Parley.Server.Events.WebhookOptions { MaxAttempts = 3, InitialBackoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(1) };
        var letters = DispatchProxy.Create<IChatStore, DeadLetterStore>();
        var (sink, http) = DirectSink(handler, options, TimeProvider.System, letters);
        using var _ = http;

        var failedBatches = 0;
        for (var batch = 0; batch < 4 && ((DeadLetterStore)(object)letters).Letters.Count == 0; batch++)
        {
            try
            {
                await sink.PublishAsync([Record(1)], Ct);
            }
            catch (Parley.Server.Events.EventSinkException)
            {
                failedBatches++;
            }
        }

        Assert.Equal("e1", Assert.Single(((DeadLetterStore)(object)letters).Letters).EventId);
        Assert.Equal(1, failedBatches); // refused twice in the first batch, once more in the second
    }

    [Fact]
    public async Task Publish_DeadLetterNotStoredTheFirstTime_IsStoredWhenTheBatchComesAgain()
    {
        var handler = new ScriptedHandler { Status = _ => System.Net.HttpStatusCode.InternalServerError };
        var options = new Parley.Server.Events.WebhookOptions { MaxAttempts = 3, InitialBackoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(1) };
        var letters = DispatchProxy.Create<IChatStore, DeadLetterStore>();
        ((DeadLetterStore)(object)letters).FailNext = true;
        var (sink, http) = DirectSink(handler, options, TimeProvider.System, letters);
        using var _ = http;

        // The database fails the dead letter: the batch fails, and the relay gives it again.
        await Assert.ThrowsAsync<TimeoutException>(() => sink.PublishAsync([Record(1)], Ct));
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        limit.CancelAfter(TimeSpan.FromSeconds(10));
        await sink.PublishAsync([Record(1)], limit.Token);

        // Refused once more on the retry (the count went on from 3), then stored: not posted for good.
        Assert.Equal(4, handler.PostCount);
        Assert.Single(((DeadLetterStore)(object)letters).Letters);
    }

    /// <summary>A store that takes dead letters and nothing else.</summary>
#pragma warning disable CA1852 // DispatchProxy derives the proxy's type from it
    internal class DeadLetterStore : DispatchProxy
#pragma warning restore CA1852
    {
        public List<DeadLetter> Letters { get; } = [];

        /// <summary>The next dead letter fails as a database that does not answer would.</summary>
        public bool FailNext { get; set; }

        protected override object? Invoke(System.Reflection.MethodInfo? targetMethod, object?[]? args)
        {
            if (targetMethod?.Name != nameof(IChatStore.AddDeadLetterAsync))
            {
                throw new NotSupportedException(targetMethod?.Name);
            }

            if (FailNext)
            {
                FailNext = false;
                return Task.FromException(new TimeoutException("The database did not answer."));
            }

            Letters.Add((DeadLetter)args![0]!);
            return Task.CompletedTask;
        }
    }

    /// <summary>
    /// A sink posting through <paramref name="handler"/> with <paramref name="options"/> (its endpoint and secret set here),
    /// and no store unless given: a dead letter would fail with a NullReferenceException. Dispose the client it returns.
    /// </summary>
    private static (Parley.Server.Events.WebhookSink Sink, HttpClient Http) DirectSink(
        ScriptedHandler handler, Parley.Server.Events.WebhookOptions options, TimeProvider time, IChatStore? store = null)
    {
        options.Url = new Uri("http://hooks.example/parley");
        options.Secret = Secret;
        var http = new HttpClient(handler);
        return (new Parley.Server.Events.WebhookSink(
            "hooks", options, http, store!, time, Microsoft.Extensions.Logging.Abstractions.NullLogger<Parley.Server.Events.WebhookSink>.Instance), http);
    }

    private static Parley.Server.Events.EventRecord Record(int n) =>
        new(Parley.Server.Events.EventTopic.Events, "c", $"e{n}", "message.created", 1, Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (var i = 0; i < 400 && !condition(); i++)
        {
            await Task.Delay(25, Ct);
        }

        Assert.True(condition());
    }

    [Fact]
    public async Task Webhook_ARecordThatDropsTheConnection_IsARefusal_DeadLetteredWithoutBlockingTheOthers()
    {
        _receiver.Drop = body => body.Contains("crash", StringComparison.Ordinal);
        var factory = Server();
        var alice = factory.BoundedApi(NewUser("alice"));
        var conversation = await alice.CreateDirectAsync(NewUser("bob"));
        await alice.SendTextAsync(conversation.Id, "crash");
        await alice.SendTextAsync(conversation.Id, "fine");

        await _receiver.WaitForAsync(r => r.Any(x => x.Body.Contains("fine", StringComparison.Ordinal)));

        Assert.Single(await factory.Services.GetRequiredService<IChatStore>().ListDeadLettersAsync("webhook:hooks", Ct));
    }

    [Fact]
    public async Task Publish_TheBatchAgainAfterTheEndpointWasUnreachable_PostsOnlyWhatItHadNotTaken()
    {
        var handler = new ScriptedHandler { Unreachable = body => body.Contains("\"n\":2", StringComparison.Ordinal) };
        var options = new Parley.Server.Events.WebhookOptions { MaxAttempts = 2, InitialBackoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(1) };
        var (sink, http) = DirectSink(handler, options, TimeProvider.System);
        using var _ = http;
        var records = Enumerable.Range(1, 3)
            .Select(n => new Parley.Server.Events.EventRecord(
                Parley.Server.Events.EventTopic.Events, "c", $"e{n}", "message.created", 1, Encoding.UTF8.GetBytes($"{{\"n\":{n}}}")))
            .ToList();

        await Assert.ThrowsAsync<Parley.Server.Events.EventSinkException>(() => sink.PublishAsync(records, Ct));
        handler.Unreachable = _ => false;
        await sink.PublishAsync(records, Ct);
        await sink.PublishAsync(records, Ct); // a later batch with the same records (a replay): posted again

        Assert.Equal(["e1", "e2", "e2", "e2", "e3", "e1", "e2", "e3"], handler.Posted);
    }

    /// <summary>
    /// Answers every POST with 204 (or <see cref="Status"/> of the n-th POST, with <see cref="RetryAfter"/>), fails it as an
    /// unreachable endpoint would (no connection), or never answers.
    /// </summary>
    private sealed class ScriptedHandler : HttpMessageHandler
    {
        public Func<string, bool> Unreachable { get; set; } = _ => false;

        public Func<string, bool> Hang { get; set; } = _ => false;

        public Func<int, System.Net.HttpStatusCode> Status { get; set; } = _ => System.Net.HttpStatusCode.NoContent;

        public TimeSpan? RetryAfter { get; set; }

        public List<string> Posted { get; } = [];

        public int PostCount
        {
            get
            {
                lock (Posted)
                {
                    return Posted.Count;
                }
            }
        }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var body = await request.Content!.ReadAsStringAsync(cancellationToken);
            lock (Posted)
            {
                Posted.Add(request.Headers.GetValues("Parley-Event-Id").Single());
            }

            if (Unreachable(body))
            {
                throw new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused");
            }

            if (Hang(body))
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }

            var response = new HttpResponseMessage(Status(PostCount));
            if (RetryAfter is { } wait && !response.IsSuccessStatusCode)
            {
                response.Headers.RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(wait);
            }

            return response;
        }
    }

    private sealed record Post(string EventId, string Type, string Signature, string Body)
    {
        public JsonElement Json => JsonDocument.Parse(Body).RootElement.Clone();
    }

    /// <summary>A real HTTP server on a loopback port that records what it accepts and fails on request.</summary>
    private sealed class Receiver : IAsyncDisposable
    {
        private readonly ConcurrentQueue<Post> _received = new();
        private readonly ConcurrentQueue<string> _attempts = new();
        private readonly ConcurrentDictionary<string, int> _tries = new();
        private readonly ConcurrentDictionary<string, byte> _refused = new();
        private WebApplication? _app;

        public string Url { get; private set; } = "";

        public int FailFirstAttempts { get; set; }

        /// <summary>While set, every POST is answered 503.</summary>
        public bool Unavailable { get; set; }

        /// <summary>The first POST waits (up to 10 s) until another is in flight.</summary>
        public bool HoldFirstUntilAnother { get; set; }

        private int _posts;

        /// <summary>How long each POST takes to answer.</summary>
        public Func<TimeSpan> LatencyOf { get; set; } = () => TimeSpan.Zero;

        /// <summary>The most POSTs that were in flight at once.</summary>
        public int MostInFlight => Volatile.Read(ref _mostInFlight);

        private int _inFlight;
        private int _mostInFlight;

        public Func<string, bool> Refuse { get; set; } = _ => false;

        /// <summary>Records whose post gets no answer: the connection is dropped.</summary>
        public Func<string, bool> Drop { get; set; } = _ => false;

        public int LandingVisits => Volatile.Read(ref _landingVisits);

        private int _landingVisits;

        public IReadOnlyList<Post> Received => [.. _received];

        public IReadOnlyList<string> Attempts => [.. _attempts];

        public IReadOnlyCollection<string> RefusedIds => [.. _refused.Keys];

        public async ValueTask StartAsync(int port = 0)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseSetting("urls", $"http://127.0.0.1:{port}");
            builder.Logging.ClearProviders();
            _app = builder.Build();
            _app.MapPost("/hook", async (HttpContext context) =>
            {
                var inFlight = Interlocked.Increment(ref _inFlight);
                int most;
                while ((most = Volatile.Read(ref _mostInFlight)) < inFlight && Interlocked.CompareExchange(ref _mostInFlight, inFlight, most) != most)
                {
                }

                try
                {
                    if (HoldFirstUntilAnother && Interlocked.Increment(ref _posts) == 1)
                    {
                        for (var i = 0; i < 1000 && Volatile.Read(ref _inFlight) < 2; i++)
                        {
                            await Task.Delay(10, context.RequestAborted);
                        }
                    }

                    TimeSpan latency;
                    lock (_received)
                    {
                        latency = LatencyOf();
                    }

                    if (latency > TimeSpan.Zero)
                    {
                        await Task.Delay(latency, context.RequestAborted);
                    }
                }
                finally
                {
                    Interlocked.Decrement(ref _inFlight);
                }

                using var reader = new StreamReader(context.Request.Body);
                var body = await reader.ReadToEndAsync(context.RequestAborted);
                var id = context.Request.Headers["Parley-Event-Id"].ToString();
                _attempts.Enqueue(id);
                var tries = _tries.AddOrUpdate(id, 1, (_, n) => n + 1);
                if (Drop(body))
                {
                    context.Abort();
                    return Results.Empty;
                }

                if (Refuse(body))
                {
                    _refused.TryAdd(id, 0);
                    return Results.StatusCode(400);
                }

                if (tries <= FailFirstAttempts || Unavailable)
                {
                    return Results.StatusCode(503);
                }

                _received.Enqueue(new Post(id, context.Request.Headers["Parley-Event-Type"].ToString(), context.Request.Headers["Parley-Signature"].ToString(), body));
                return Results.NoContent();
            });
            _app.MapPost("/moved", () => Results.Redirect("/landing"));
            _app.MapGet("/landing", () =>
            {
                Interlocked.Increment(ref _landingVisits);
                return Results.Ok();
            });
            await _app.StartAsync(TestContext.Current.CancellationToken);
            var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            Url = address + "/hook";
        }

        public async Task<IReadOnlyList<Post>> WaitForAsync(Func<IReadOnlyList<Post>, bool> done)
        {
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (!done(Received))
            {
                Assert.True(DateTime.UtcNow < until, $"The receiver got {Received.Count} records: {string.Join(", ", Received.Select(r => r.Type))}");
                await Task.Delay(20, TestContext.Current.CancellationToken);
            }

            return Received;
        }

        public async ValueTask DisposeAsync()
        {
            if (_app is not null)
            {
                await _app.DisposeAsync();
            }
        }
    }
}
