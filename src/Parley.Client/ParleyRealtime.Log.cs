using Microsoft.Extensions.Logging;

namespace Parley.Client;

public sealed partial class ParleyRealtime
{
    // One catalogue for the connection and its pieces (Realtime/): the same event has one id wherever it is logged.
    internal static partial class Log
    {
        [LoggerMessage(EventId = 5001, Level = LogLevel.Information, Message = "Connected as {UserId} on device {DeviceId} (connection {ConnectionId}, resuming: {Resuming})")]
        public static partial void Connected(ILogger logger, string connectionId, string userId, string deviceId, bool resuming);

        [LoggerMessage(EventId = 5002, Level = LogLevel.Debug, Message = "Connection state {State} (close status {CloseStatus}, retry in {RetryDelay}, error {Error})")]
        public static partial void StateChanged(ILogger logger, ConnectionState state, int? closeStatus, TimeSpan? retryDelay, string? error);

        [LoggerMessage(EventId = 5003, Level = LogLevel.Information, Message = "Socket ended (close status {CloseStatus} {CloseDescription}, error {Error})")]
        public static partial void SocketEnded(ILogger logger, int? closeStatus, string? closeDescription, string? error);

        [LoggerMessage(EventId = 5004, Level = LogLevel.Warning, Message = "Ignored a server frame that could not be read: {Reason}")]
        public static partial void BadFrame(ILogger logger, string reason);

        [LoggerMessage(EventId = 5005, Level = LogLevel.Information, Message = "Gap in conversation {ConversationId} before seq {Seq} (catching up: {CatchingUp})")]
        public static partial void GapDetected(ILogger logger, Guid conversationId, long seq, bool catchingUp);

        [LoggerMessage(EventId = 5006, Level = LogLevel.Warning, Message = "Filling a gap over REST failed: {Reason}; retrying")]
        public static partial void GapFillFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = 5007, Level = LogLevel.Warning, Message = "Skipped {Positions} missing positions: {Reason}")]
        public static partial void GapsSkipped(ILogger logger, long positions, string reason);

        [LoggerMessage(EventId = 5008, Level = LogLevel.Warning, Message = "The position could not be resumed ({Reason}): the app reloads")]
        public static partial void SyncReset(ILogger logger, string? reason);

        [LoggerMessage(EventId = 5009, Level = LogLevel.Warning, Message = "The server reported {Code}: {Detail}")]
        public static partial void ServerError(ILogger logger, string code, string? detail);

        [LoggerMessage(EventId = 5011, Level = LogLevel.Error, Message = "The connection failed unexpectedly")]
        public static partial void LoopFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 5010, Level = LogLevel.Error, Message = "Saving the delivery checkpoint failed; the next one will be tried")]
        public static partial void CheckpointSaveFailed(ILogger logger, Exception exception);
    }
}
