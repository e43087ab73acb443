using System.Net;
using System.Text;
using Parley.Server.Protocol;
using Parley.Server.Storage;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>
/// unread_count is "the number of non-deleted messages from others after the caller's read watermark".
/// The server may store it, so it is compared with that definition after every kind of change.
/// </summary>
public sealed class UnreadCountTests : IAsyncLifetime
{
    private readonly ParleyFactory _factory = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    [Theory]
    [InlineData(20260524)]
    [InlineData(7)]
    [InlineData(31337)]
    public async Task UnreadCount_AfterEachStepOfASeededRandomMix_MatchesTheDefinition(int seed)
    {
        await using var scenario = await RandomScenario.StartAsync(_factory, seed);

        for (var step = 0; step < 70; step++)
        {
            await scenario.RandomStepAsync();
            await scenario.VerifyAsync();
        }

        scenario.AssertEveryKindOfStepRan();
    }

    [Fact]
    public async Task Delete_OfAnUnreadMessage_DecrementsTheCount()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var first = await alice.SendTextAsync(conversation.Id, "one");
        await alice.SendTextAsync(conversation.Id, "two");
        Assert.Equal(2, (await bob.GetConversationAsync(conversation.Id)).UnreadCount);

        await alice.DeleteMessageAsync(first.Id);

        Assert.Equal(1, (await bob.GetConversationAsync(conversation.Id)).UnreadCount);
        Assert.Equal(1, (await bob.ConversationsByIdAsync())[conversation.Id].UnreadCount);
    }

    [Fact]
    public async Task Delete_OfAnAlreadyReadMessage_LeavesTheCount()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var first = await alice.SendTextAsync(conversation.Id, "one");
        var second = await alice.SendTextAsync(conversation.Id, "two");
        await alice.SendTextAsync(conversation.Id, "three");
        await bob.MarkReadAsync(second.Id);
        Assert.Equal(1, (await bob.GetConversationAsync(conversation.Id)).UnreadCount);

        await alice.DeleteMessageAsync(first.Id);
        await alice.DeleteMessageAsync(second.Id);

        var seen = await bob.GetConversationAsync(conversation.Id);
        Assert.Equal(1, seen.UnreadCount);
        Assert.Equal(second.Seq, seen.ReadUpToSeq);
    }

    [Fact]
    public async Task Delete_Twice_DecrementsOnlyOnce()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var first = await alice.SendTextAsync(conversation.Id, "one");
        await alice.SendTextAsync(conversation.Id, "two");
        await alice.SendTextAsync(conversation.Id, "three");

        await alice.DeleteMessageAsync(first.Id);
        await alice.DeleteMessageAsync(first.Id);

        Assert.Equal(2, (await bob.GetConversationAsync(conversation.Id)).UnreadCount);
    }

    [Fact]
    public async Task Read_OfAnOlderMessage_IsANoOpForTheCount()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var first = await alice.SendTextAsync(conversation.Id, "one");
        var second = await alice.SendTextAsync(conversation.Id, "two");
        await alice.SendTextAsync(conversation.Id, "three");
        await bob.MarkReadAsync(second.Id);

        var state = await bob.MarkReadAsync(first.Id);

        Assert.Equal(second.Seq, state.GetProperty("read_up_to_seq").GetInt64());
        Assert.Equal(1, state.GetProperty("unread_count").GetInt32());
        var seen = await bob.GetConversationAsync(conversation.Id);
        Assert.Equal(1, seen.UnreadCount);
        Assert.Equal(second.Seq, seen.ReadUpToSeq);
    }

    [Fact]
    public async Task OwnMessages_NeverCount()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var group = await alice.CreateGroupAsync("team", "bob");
        await alice.SendTextAsync(group.Id, "a1");
        await alice.SendTextAsync(group.Id, "a2");
        Assert.Equal(0, (await alice.GetConversationAsync(group.Id)).UnreadCount);

        await bob.SendTextAsync(group.Id, "b1");
        var mine = await alice.SendTextAsync(group.Id, "a3");
        await bob.SendTextAsync(group.Id, "b2");
        await alice.DeleteMessageAsync(mine.Id);

        Assert.Equal(1, (await alice.GetConversationAsync(group.Id)).UnreadCount); // b2 only
        Assert.Equal(0, (await bob.GetConversationAsync(group.Id)).UnreadCount); // bob's send read everything before it
    }

    [Fact]
    public async Task Edit_LeavesEveryCount()
    {
        using var alice = _factory.BoundedApi("alice");
        using var bob = _factory.BoundedApi("bob");
        var conversation = await alice.CreateDirectAsync("bob");
        var sent = await alice.SendTextAsync(conversation.Id, "one");
        await alice.SendTextAsync(conversation.Id, "two");
        await bob.MarkReadAsync(sent.Id);

        await alice.EditAsync(sent.Id, "one, edited");

        Assert.Equal(1, (await bob.GetConversationAsync(conversation.Id)).UnreadCount);
        Assert.Equal(0, (await alice.GetConversationAsync(conversation.Id)).UnreadCount);
    }

    [Fact]
    public async Task MemberAddedLater_CountsOnlyMessagesAfterJoining()
    {
        using var alice = _factory.BoundedApi("alice");
        using var dave = _factory.BoundedApi("dave");
        var group = await alice.CreateGroupAsync("team", "bob");
        await alice.SendTextAsync(group.Id, "before one");
        await alice.SendTextAsync(group.Id, "before two");

        await AddAsync(alice, group.Id, "dave");
        var joined = await dave.GetConversationAsync(group.Id);
        await alice.SendTextAsync(group.Id, "after");

        Assert.Equal(0, joined.UnreadCount);
        Assert.Equal(1, (await dave.GetConversationAsync(group.Id)).UnreadCount);
        Assert.Equal(1, (await dave.ConversationsByIdAsync())[group.Id].UnreadCount);
    }

    [Fact]
    public async Task MemberRemovedAndAddedAgain_CountsOnlyMessagesAfterRejoining()
    {
        using var alice = _factory.BoundedApi("alice");
        using var carol = _factory.BoundedApi("carol");
        var group = await alice.CreateGroupAsync("team", "carol");
        await alice.SendTextAsync(group.Id, "while carol is in");
        Assert.Equal(HttpStatusCode.NoContent, (await alice.DeleteAsync($"/api/v1/conversations/{group.Id}/participants/carol")).StatusCode);
        await alice.SendTextAsync(group.Id, "while carol is out");

        await AddAsync(alice, group.Id, "carol");
        await alice.SendTextAsync(group.Id, "carol is back");

        var seen = await carol.GetConversationAsync(group.Id);
        Assert.Equal(1, seen.UnreadCount);
        Assert.Equal("carol is back", Assert.Single(await carol.WholeHistoryAsync(group.Id)).Content);
    }

    private static async Task<Conversation> AddAsync(ParleyApi owner, Guid conversationId, string userId) =>
        await ParleyApi.ReadAsync<Conversation>(await owner.PostAsync($"/api/v1/conversations/{conversationId}/participants", new { user_ids = new[] { userId } }));

    /// <summary>
    /// A group (alice owns it; bob and carol to start, dave joins later) and a direct conversation (alice and bob),
    /// driven by a seeded random mix of sends, system messages, reads (older ones too), edits, deletes, additions
    /// and removals. A model tracks membership and watermarks to choose valid steps and to cross-check the server.
    /// </summary>
    private sealed class RandomScenario : IAsyncDisposable
    {
        private static readonly string[] Users = ["alice", "bob", "carol", "dave"];
        private static readonly string[] StepKinds = ["send", "system", "read", "edit", "delete", "add", "remove"];

        private readonly Random _random;
        private readonly int _seed;
        private readonly Dictionary<string, ParleyApi> _clients;
        private readonly ParleyApi _service;
        private readonly List<ConversationModel> _conversations = [];
        private readonly List<string> _log = [];
        private readonly HashSet<string> _ran = [];

        private RandomScenario(ParleyFactory factory, int seed)
        {
            _seed = seed;
            _random = new Random(seed);
            _clients = Users.ToDictionary(u => u, factory.BoundedApi);
            _service = factory.BoundedServiceApi();
        }

        public static async Task<RandomScenario> StartAsync(ParleyFactory factory, int seed)
        {
            var scenario = new RandomScenario(factory, seed);
            var alice = scenario._clients["alice"];
            var group = await alice.CreateGroupAsync("random", "bob", "carol");
            var direct = await alice.CreateDirectAsync("bob");
            scenario._conversations.Add(new ConversationModel(group.Id, isGroup: true, ["alice", "bob", "carol"]));
            scenario._conversations.Add(new ConversationModel(direct.Id, isGroup: false, ["alice", "bob"]));
            return scenario;
        }

        public async Task RandomStepAsync()
        {
            while (true)
            {
                var kind = _random.Next(100) switch
                {
                    < 35 => "send",
                    < 40 => "system",
                    < 62 => "read",
                    < 70 => "edit",
                    < 82 => "delete",
                    < 91 => "add",
                    _ => "remove",
                };
                if (await TryStepAsync(kind))
                {
                    _ran.Add(kind);
                    return;
                }
            }
        }

        public void AssertEveryKindOfStepRan() =>
            Assert.True(StepKinds.All(_ran.Contains), $"seed {_seed} never ran: {string.Join(", ", StepKinds.Except(_ran))}");

        /// <summary>Every user's view of every conversation against the definition and the model.</summary>
        public async Task VerifyAsync()
        {
            foreach (var user in Users)
            {
                var api = _clients[user];
                var listed = await api.ConversationsByIdAsync();
                foreach (var model in _conversations)
                {
                    if (!model.Members.TryGetValue(user, out var member))
                    {
                        Check(!listed.ContainsKey(model.Id), $"{user} is not a member of {model.Name} but lists it");
                        Check(
                            (await api.GetAsync($"/api/v1/conversations/{model.Id}")).StatusCode == HttpStatusCode.NotFound,
                            $"{user} is not a member of {model.Name} but can GET it");
                        continue;
                    }

                    Check(listed.TryGetValue(model.Id, out var fromList), $"{user} is a member of {model.Name} but does not list it");
                    var single = await api.GetConversationAsync(model.Id);
                    var history = await api.WholeHistoryAsync(model.Id, pageSize: 7);

                    var visible = model.Messages.Where(m => m.Seq > member.JoinedSeq).Select(m => m.Id);
                    Check(visible.SequenceEqual(history.Select(m => m.Id)), $"{user}'s history of {model.Name} is not the messages since joining");
                    Check(fromList!.ReadUpToSeq == member.ReadSeq, $"{user}'s read_up_to_seq in {model.Name}: {fromList.ReadUpToSeq}, model {member.ReadSeq}");
                    Check(single.ReadUpToSeq == fromList.ReadUpToSeq, $"{user}'s read_up_to_seq in {model.Name} differs between list and GET");

                    // The definition, computed from what the caller can see and the caller's own watermark.
                    var expected = history.Count(m => m.SenderId != user && m.DeletedAt is null && m.Seq > fromList.ReadUpToSeq);
                    Check(fromList.UnreadCount == expected, $"{user}'s unread_count in {model.Name} (list): {fromList.UnreadCount}, definition {expected}");
                    Check(single.UnreadCount == expected, $"{user}'s unread_count in {model.Name} (GET): {single.UnreadCount}, definition {expected}");
                }
            }
        }

        private async Task<bool> TryStepAsync(string kind)
        {
            var conversation = _conversations[_random.Next(_conversations.Count)];
            switch (kind)
            {
                case "send":
                {
                    var sender = RandomOf(conversation.Members.Keys);
                    var message = await _clients[sender].SendTextAsync(conversation.Id, $"{sender} #{_log.Count}");
                    conversation.Append(message);
                    conversation.Members[sender].ReadSeq = message.Seq;
                    Log($"{sender} sends seq {message.Seq} to {conversation.Name}");
                    return true;
                }

                case "system":
                {
                    var message = await ParleyApi.ReadAsync<Message>(
                        await _service.PostMessageAsync(new { conversation_id = conversation.Id, message_type = "system", content = $"notice #{_log.Count}" }),
                        HttpStatusCode.Created);
                    conversation.Append(message);
                    Log($"service sends system seq {message.Seq} to {conversation.Name}");
                    return true;
                }

                case "read":
                {
                    var reader = RandomOf(conversation.Members.Keys);
                    var member = conversation.Members[reader];
                    var visible = conversation.Messages.Where(m => m.Seq > member.JoinedSeq).ToList();
                    if (visible.Count == 0)
                    {
                        return false;
                    }

                    var target = visible[_random.Next(visible.Count)];
                    var state = await _clients[reader].MarkReadAsync(target.Id);
                    member.ReadSeq = Math.Max(member.ReadSeq, target.Seq);
                    Check(state.GetProperty("read_up_to_seq").GetInt64() == member.ReadSeq, $"{reader} read seq {target.Seq}: {state}");
                    Check(state.GetProperty("delivered_up_to_seq").GetInt64() >= member.ReadSeq, $"{reader} read but not delivered: {state}");
                    Log($"{reader} reads seq {target.Seq} in {conversation.Name} (watermark {member.ReadSeq})");
                    return true;
                }

                case "edit":
                {
                    var candidates = conversation.Messages
                        .Where(m => m.DeletedAt is null && m.MessageType == "text" && conversation.Members.ContainsKey(m.SenderId)).ToList();
                    if (candidates.Count == 0)
                    {
                        return false;
                    }

                    var target = candidates[_random.Next(candidates.Count)];
                    var edited = await _clients[target.SenderId].EditAsync(target.Id, target.Content + " (edited)");
                    conversation.Replace(edited);
                    conversation.LastSeq++;
                    Log($"{target.SenderId} edits seq {target.Seq} in {conversation.Name}");
                    return true;
                }

                case "delete":
                {
                    var candidates = conversation.Messages.Where(m => m.DeletedAt is null).ToList();
                    if (candidates.Count == 0)
                    {
                        return false;
                    }

                    var target = candidates[_random.Next(candidates.Count)];
                    var (actor, client) = target.SenderId == "system"
                        ? ("service", _service)
                        : conversation.IsGroup && (_random.Next(2) == 0 || !conversation.Members.ContainsKey(target.SenderId))
                            ? ("alice", _clients["alice"])
                            : (target.SenderId, _clients[target.SenderId]);
                    var tombstone = await client.DeleteMessageAsync(target.Id);
                    conversation.Replace(tombstone);
                    conversation.LastSeq++;
                    Log($"{actor} deletes seq {target.Seq} in {conversation.Name}");
                    return true;
                }

                case "add":
                {
                    var outside = Users.Where(u => !conversation.Members.ContainsKey(u)).ToList();
                    if (!conversation.IsGroup || outside.Count == 0)
                    {
                        return false;
                    }

                    var user = outside[_random.Next(outside.Count)];
                    var after = await AddAsync(_clients["alice"], conversation.Id, user);
                    Check(after.LastSeq == conversation.LastSeq + 1, $"adding {user} took seq {after.LastSeq} after {conversation.LastSeq}");
                    // The participant_added event is the conversation's newest seq: the new member sees what follows it.
                    conversation.LastSeq = after.LastSeq;
                    conversation.Members[user] = new MemberModel(after.LastSeq);
                    Log($"alice adds {user} to {conversation.Name} at seq {after.LastSeq}");
                    return true;
                }

                case "remove":
                {
                    var removable = conversation.Members.Keys.Where(u => u != "alice").ToList();
                    if (!conversation.IsGroup || removable.Count <= 1)
                    {
                        return false;
                    }

                    var user = removable[_random.Next(removable.Count)];
                    var response = await _clients["alice"].DeleteAsync($"/api/v1/conversations/{conversation.Id}/participants/{user}");
                    Check(response.StatusCode == HttpStatusCode.NoContent, $"removing {user}: {(int)response.StatusCode}");
                    conversation.Members.Remove(user);
                    conversation.LastSeq++;
                    Log($"alice removes {user} from {conversation.Name}");
                    return true;
                }

                default:
                    throw new InvalidOperationException(kind);
            }
        }

        private string RandomOf(IEnumerable<string> values)
        {
            var list = values.Order(StringComparer.Ordinal).ToList();
            return list[_random.Next(list.Count)];
        }

        private void Log(string entry) => _log.Add(entry);

        private void Check(bool condition, string what)
        {
            if (condition)
            {
                return;
            }

            var trail = new StringBuilder().AppendLine($"seed {_seed}, after step {_log.Count}: {what}").AppendLine("last steps:");
            foreach (var entry in _log.TakeLast(12))
            {
                trail.AppendLine("  " + entry);
            }

            Assert.Fail(trail.ToString());
        }

        public ValueTask DisposeAsync()
        {
            foreach (var client in _clients.Values)
            {
                client.Dispose();
            }

            _service.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    private sealed class MemberModel(long joinedSeq)
    {
        public long JoinedSeq { get; } = joinedSeq;

        /// <summary>Joining leaves nothing unread: the watermark starts at the join.</summary>
        public long ReadSeq { get; set; } = joinedSeq;
    }

    private sealed class ConversationModel(Guid id, bool isGroup, IEnumerable<string> members)
    {
        public Guid Id { get; } = id;

        public bool IsGroup { get; } = isGroup;

        public string Name => IsGroup ? "the group" : "the direct conversation";

        public Dictionary<string, MemberModel> Members { get; } = members.ToDictionary(m => m, _ => new MemberModel(0));

        /// <summary>Every message in seq order, tombstones included.</summary>
        public List<Message> Messages { get; } = [];

        public long LastSeq { get; set; } = 1;

        public void Append(Message message)
        {
            // Every durable change takes the next seq: a message follows the previous change with no gap.
            Assert.True(message.Seq == LastSeq + 1, $"seq {message.Seq} does not directly follow {LastSeq}");
            LastSeq = message.Seq;
            Messages.Add(message);
        }

        public void Replace(Message message) => Messages[Messages.FindIndex(m => m.Id == message.Id)] = message;
    }
}
