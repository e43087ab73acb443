namespace Parley.Bench.Client;

/// <summary>Error codes the ledger and the verdict treat specially.</summary>
internal static class BenchErrors
{
    /// <summary>The server's refusal of a send it declined on purpose (a per-user limit): the only code that refuses a send.</summary>
    public const string RateLimited = "rate_limited";

    /// <summary>A <c>new_message</c> of a conversation the device is not a member of: the server leaked a copy.</summary>
    public const string ForeignConversation = "foreign_conversation";

    /// <summary>A frame the tool could not parse.</summary>
    public const string UnparsableFrame = "unparsable_frame";

    /// <summary>Raised by the tool about something it received, not by the server about a send: never answers a send.</summary>
    public static bool IsObservation(string code) => code is ForeignConversation or UnparsableFrame;
}
