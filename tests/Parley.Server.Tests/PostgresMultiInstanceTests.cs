using System.Collections.Concurrent;
using System.Net;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// Two Parley servers on one PostgreSQL database, as several instances behind a load balancer: concurrent
/// writers of one conversation on both still get gapless seqs, and no reader ever sees a later seq before an
/// earlier one.
/// </summary>
[Trait("Store", "Independent")]
public sealed class PostgresMultiInstanceTests : IAsyncLifetime
{
    private TwoInstances? _instances;
    private ParleyFactory? _first;
    private ParleyFactory? _second;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _instances = new TwoInstances();
        (_first, _second) = (_instances.First, _instances.Second);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => _instances?.DisposeAsync() ?? ValueTask.CompletedTask;

    private static async Task<Message> SendRetryingAsync(ParleyApi api, Guid conversationId, string text)
    {
        var body = new { conversation_id = conversationId, content = text, message_type = "text", client_message_id = "send-" + text };
        for (var attempt = 1; ; attempt++)
        {
            var response = await api.PostAsync("/api/v1/messages", body);
            if (response.StatusCode != HttpStatusCode.ServiceUnavailable || attempt == 5)
            {
                return await ParleyApi.ReadAsync<Message>(response, HttpStatusCode.Created);
            }

            await Task.Delay(250 * attempt, Ct);
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task ConcurrentSendsThroughTwoInstances_SeqsAreGaplessAndReadersNeverSeeALaterSeqFirst()
    {
        var ct = TestContext.Current.CancellationToken;
        string[] users = ["alice", "bob", "carol", "dave"];
        const int perUserPerInstance = 20;
        using var owner = _first!.Api("alice");
        var group = await owner.CreateGroupAsync("busy", "bob", "carol", "dave");
        var apis = users.SelectMany(u => new[] { _first.Api(u), _second!.Api(u) }).ToList();
        using var stopReading = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var holes = new ConcurrentBag<string>();
        var pagesRead = 0;

        // Readers on both instances: a page is the newest messages; any hole in it is a seq seen before an earlier one.
        var readers = new[] { _first.Api("bob"), _second!.Api("carol") }.Select(reader => Task.Run(async () =>
        {
            while (!stopReading.IsCancellationRequested)
            {
                var page = await reader.ListMessagesAsync(group.Id, "?limit=100");
                Interlocked.Increment(ref pagesRead);
                var seqs = page.Messages.Select(m => m.Seq).OrderBy(s => s).ToList();
                for (var i = 1; i < seqs.Count; i++)
                {
                    if (seqs[i] != seqs[i - 1] + 1)
                    {
                        holes.Add($"saw {seqs[i]} without {seqs[i - 1] + 1}");
                    }
                }
            }
        }, CancellationToken.None)).ToList();

        // A send refused with 503 (the database busy: on a loaded machine a wait for a pooled connection can pass its
        // timeout) is sent again with its client_message_id, as a client does: the seqs below must still be exactly
        // 2..total+1, so a retried send that had been written takes no second seq.
        var sends = apis.SelectMany((api, index) => Enumerable.Range(0, perUserPerInstance).Select(i => (api, text: $"{index}-{i}")))
            .Select(x => Task.Run(() => SendRetryingAsync(x.api, group.Id, x.text), CancellationToken.None))
            .ToList();
        var sent = await Task.WhenAll(sends);
        await stopReading.CancelAsync();
        await Task.WhenAll(readers);

        var total = users.Length * 2 * perUserPerInstance;
        Assert.Empty(holes);
        Assert.True(pagesRead > 0);
        // Creation is seq 1; the messages take exactly 2..total+1, each once.
        Assert.Equal(Enumerable.Range(2, total).Select(i => (long)i), sent.Select(m => m.Seq).Order());
        var history = await AllMessagesAsync(owner, group.Id);
        Assert.Equal(sent.Select(m => m.Id).Order(), history.Select(m => m.Id).Order());
        Assert.Equal(history.Select(m => m.Seq).Order(), history.Select(m => m.Seq));
        var conversation = await _second.Api("dave").GetConversationAsync(group.Id);
        Assert.Equal(total + 1, conversation.LastSeq);
        // Unread counters written by both instances agree with their definition (nobody has read anything).
        foreach (var user in users)
        {
            var view = await _first.Api(user).GetConversationAsync(group.Id);
            Assert.Equal(history.Count(m => m.SenderId != user && m.Seq > view.ReadUpToSeq), view.UnreadCount);
        }

        foreach (var api in apis)
        {
            api.Dispose();
        }
    }

    [Fact(Timeout = 60_000)]
    public async Task SameDirectPairFromBothInstancesAtOnce_CreatesOneConversation()
    {
        var ct = TestContext.Current.CancellationToken;
        var attempts = Enumerable.Range(0, 10).Select(i => Task.Run(async () =>
        {
            using var api = (i % 2 == 0 ? _first! : _second!).Api(i % 4 < 2 ? "erin" : "frank");
            return await api.PostAsync("/api/v1/conversations", new { type = "direct", participant_ids = new[] { i % 4 < 2 ? "frank" : "erin" } });
        }, CancellationToken.None));

        var responses = await Task.WhenAll(attempts).WaitAsync(ct);

        var ids = new HashSet<Guid>();
        foreach (var response in responses)
        {
            Assert.True(response.StatusCode is HttpStatusCode.Created or HttpStatusCode.OK, $"got {(int)response.StatusCode}");
            ids.Add((await ParleyApi.ReadAsync<Protocol.Conversation>(response, HttpStatusCode.Created, HttpStatusCode.OK)).Id);
        }

        Assert.Single(ids);
        Assert.Equal(1, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
    }

    private static async Task<List<Message>> AllMessagesAsync(ParleyApi api, Guid conversationId)
    {
        var all = new List<Message>();
        long after = 0;
        while (true)
        {
            var page = await api.ListMessagesAsync(conversationId, $"?after={after}&limit=100");
            all.AddRange(page.Messages);
            if (page.NextCursor is not { } next)
            {
                return all;
            }

            after = next;
        }
    }
}
