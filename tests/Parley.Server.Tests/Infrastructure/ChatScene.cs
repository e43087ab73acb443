using Parley.Server.Protocol;

namespace Parley.Server.Tests.Infrastructure;

/// <summary>
/// The arrange step the conversation tests share: a conversation its owner created over REST, the members' REST
/// clients, and sockets for the devices the test names, opened after the conversation exists and in the order named
/// (so the next frame each socket gets after <c>connected</c> is one the test caused). Every client is bounded
/// (<see cref="MessagingKit.RequestTimeout"/>, <see cref="WsClient.DefaultTimeout"/>); disposing the scene closes them.
/// <code>
/// await using var chat = await _factory.DirectChat("alice", "bob").Connect("alice", "phone", "laptop").ConnectWithAcks("bob").OpenAsync();
/// </code>
/// Sockets need a server on Kestrel (<see cref="ParleyFactory.StartKestrel"/>); REST clients work either way.
/// </summary>
internal sealed class ChatScene : IAsyncDisposable
{
    private readonly ParleyFactory _factory;
    private readonly Dictionary<string, ParleyApi> _apis = new(StringComparer.Ordinal);
    private readonly List<(string UserId, string? DeviceId, WsClient Socket)> _sockets = [];
    private Conversation? _conversation;

    private ChatScene(ParleyFactory factory) => _factory = factory;

    public Conversation Conversation => _conversation ?? throw new InvalidOperationException("The conversation is created by OpenAsync.");

    public Guid Id => Conversation.Id;

    /// <summary>Every socket opened through the scene, in the order opened.</summary>
    public IReadOnlyList<WsClient> Sockets => [.. _sockets.Select(s => s.Socket)];

    /// <summary>The user's REST client (one per user, made on first use).</summary>
    public ParleyApi Api(string userId)
    {
        if (!_apis.TryGetValue(userId, out var api))
        {
            api = _factory.BoundedApi(userId);
            _apis.Add(userId, api);
        }

        return api;
    }

    /// <summary>The user's socket on <paramref name="deviceId"/>, or the user's only socket.</summary>
    public WsClient Socket(string userId, string? deviceId = null) =>
        _sockets.Single(s => s.UserId == userId && (deviceId is null || s.DeviceId == deviceId)).Socket;

    /// <summary>Opens one more socket: a member who connects later, or someone outside the conversation.</summary>
    public async Task<WsClient> ConnectAsync(string userId, string? deviceId = null, string query = "")
    {
        var socket = await WsClient.ConnectAsync(_factory, userId, query, deviceId);
        _sockets.Add((userId, deviceId, socket));
        return socket;
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = _sockets.Count - 1; i >= 0; i--)
        {
            await _sockets[i].Socket.DisposeAsync();
        }

        foreach (var api in _apis.Values)
        {
            api.Dispose();
        }
    }

    /// <summary>What the scene holds once opened: the conversation and the sockets to open, in order.</summary>
    internal sealed class Builder(ParleyFactory factory, string owner, Func<ParleyApi, Task<Conversation>> create)
    {
        private readonly List<(string UserId, string? DeviceId, string Query)> _sockets = [];

        /// <summary>A socket for each of the user's <paramref name="deviceIds"/>; with none, one socket without a device id.</summary>
        public Builder Connect(string userId, params string[] deviceIds)
        {
            if (deviceIds.Length == 0)
            {
                _sockets.Add((userId, null, ""));
            }

            foreach (var deviceId in deviceIds)
            {
                _sockets.Add((userId, deviceId, ""));
            }

            return this;
        }

        /// <summary>A socket for a device that acknowledges what it receives (<c>acks=true</c>).</summary>
        public Builder ConnectWithAcks(string userId, string? deviceId = null)
        {
            _sockets.Add((userId, deviceId, "acks=true"));
            return this;
        }

        public async Task<ChatScene> OpenAsync()
        {
            var scene = new ChatScene(factory);
            try
            {
                scene._conversation = await create(scene.Api(owner));
                foreach (var (userId, deviceId, query) in _sockets)
                {
                    await scene.ConnectAsync(userId, deviceId, query);
                }

                return scene;
            }
            catch (Exception)
            {
                await scene.DisposeAsync();
                throw;
            }
        }
    }
}

internal static class ChatSceneFactory
{
    /// <summary>A direct conversation <paramref name="owner"/> opens with <paramref name="other"/>.</summary>
    public static ChatScene.Builder DirectChat(this ParleyFactory factory, string owner, string other) =>
        new(factory, owner, api => api.CreateDirectAsync(other));

    /// <summary>A group <paramref name="owner"/> creates with <paramref name="others"/> as members.</summary>
    public static ChatScene.Builder GroupChat(this ParleyFactory factory, string name, string owner, params string[] others) =>
        new(factory, owner, api => api.CreateGroupAsync(name, others));
}
