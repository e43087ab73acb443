using Parley.Client;

namespace Parley.Bench.Client;

/// <summary>
/// Creates the run's conversations through <see cref="ParleyClient"/> (the public client library), a bounded number
/// of requests at a time. Set-up is not measured.
/// </summary>
internal static class RestSetup
{
    /// <summary>A direct conversation of <paramref name="creator"/> and <paramref name="other"/>: its id and current seq.</summary>
    public static async Task<(Guid Id, long LastSeq)> DirectAsync(HttpClient http, Identity creator, Identity other, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(creator);
        ArgumentNullException.ThrowIfNull(other);
        using var client = new ParleyClient(creator.Server, creator.Credentials, http);
        var conversation = await client.CreateConversationAsync(CreateConversationRequest.Direct(other.UserId), cancellationToken);
        return (conversation.Id, conversation.LastSeq);
    }

    /// <summary>A group created by <paramref name="members"/>[0] with all of them.</summary>
    public static async Task<(Guid Id, long LastSeq)> GroupAsync(HttpClient http, IReadOnlyList<Identity> members, string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(members);
        var creator = members[0];
        using var client = new ParleyClient(creator.Server, creator.Credentials, http);
        var conversation = await client.CreateConversationAsync(
            CreateConversationRequest.Group(name, [.. members.Skip(1).Select(m => m.UserId)]), cancellationToken);
        return (conversation.Id, conversation.LastSeq);
    }

    /// <summary>Runs <paramref name="body"/> for 0..count-1, <paramref name="concurrency"/> at a time; the first failure ends it.</summary>
    public static Task ForEachAsync(int count, int concurrency, Func<int, CancellationToken, ValueTask> body, CancellationToken cancellationToken) =>
        Parallel.ForEachAsync(
            Enumerable.Range(0, count),
            new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancellationToken },
            body);
}
