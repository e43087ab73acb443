namespace Parley.Server.Realtime;

internal sealed partial class Connection
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "Connection {ConnectionId} is a slow consumer: its send queue of {Capacity} frames is full; closing with 4001")]
        public static partial void SlowConsumer(ILogger logger, string connectionId, int capacity);

        [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Connection {ConnectionId} sent a message over {Limit} bytes; closing with 1009")]
        public static partial void FrameTooBig(ILogger logger, string connectionId, int limit);

        [LoggerMessage(EventId = 2003, Level = LogLevel.Debug, Message = "Connection {ConnectionId} send loop ended: {Reason}")]
        public static partial void SendFailed(ILogger logger, string connectionId, string reason);

        [LoggerMessage(EventId = 2004, Level = LogLevel.Debug, Message = "Connection {ConnectionId} receive loop ended: {Reason}")]
        public static partial void ReceiveEnded(ILogger logger, string connectionId, string reason);

        [LoggerMessage(EventId = 2005, Level = LogLevel.Information, Message = "Connection {ConnectionId} answered no ping within {Timeout}; aborting it")]
        public static partial void HeartbeatTimedOut(ILogger logger, string connectionId, TimeSpan timeout);
    }
}
