using System.Net;
using Parley.Client.Realtime;

namespace Parley.Client.Tests;

/// <summary>The reconnect loop's decisions: which refusals and close codes end the connection, what comes after a socket, the address.</summary>
[Trait("Store", "Independent")]
public sealed class ReconnectorTests
{
    [Theory]
    [InlineData(400, true)]
    [InlineData(401, true)]
    [InlineData(403, true)]
    [InlineData(404, true)]
    [InlineData(408, false)]
    [InlineData(429, false)]
    [InlineData(500, false)]
    [InlineData(502, false)]
    [InlineData(503, false)]
    public void IsTerminal_RefusedUpgrade_OnlyClientErrorsRetryingCannotFix(int status, bool terminal) =>
        Assert.Equal(terminal, Reconnector.IsTerminal((HttpStatusCode)status));

    [Fact]
    public void IsTerminal_NoHttpStatus_Retried() => Assert.False(Reconnector.IsTerminal(null));

    [Theory]
    [InlineData(1000, false)]
    [InlineData(1001, false)]
    [InlineData(1002, true)]
    [InlineData(1003, true)]
    [InlineData(1007, true)]
    [InlineData(1008, true)]
    [InlineData(1009, true)]
    [InlineData(1010, true)]
    [InlineData(1011, false)]
    [InlineData(1013, false)]
    [InlineData(4000, true)]
    [InlineData(4001, false)]
    [InlineData(4003, false)]
    [InlineData(4400, true)]
    public void IsTerminalClose_CloseCode_TerminalOnlyWhenTheClientMustChange(int status, bool terminal) =>
        Assert.Equal(terminal, Reconnector.IsTerminalClose(status));

    [Theory]
    [InlineData(1009, false, "Fail")]
    [InlineData(4003, false, "Now")]
    [InlineData(1000, true, "Now")]
    [InlineData(1001, false, "AfterBackoff")]
    [InlineData(4001, false, "AfterBackoff")]
    [InlineData(1011, false, "AfterBackoff")]
    public void AfterSocket_HowItEnded_WhatComesNext(int closeStatus, bool restart, string next) =>
        Assert.Equal(Enum.Parse<NextAttempt>(next), Reconnector.AfterSocket(new SessionEnd(closeStatus, null, null, restart)));

    [Fact]
    public void AfterSocket_VanishedWithoutACloseFrame_ReconnectsAfterTheBackOff() =>
        Assert.Equal(NextAttempt.AfterBackoff, Reconnector.AfterSocket(new SessionEnd(null, null, new IOException("reset"), false)));

    [Fact]
    public void BuildRequest_HttpsWithDeviceAndCursor_WssWithEscapedQueryAndTheHeaders()
    {
        var request = Reconnector.BuildRequest(
            new Uri("https://chat.example.com/parley/"), [new("Authorization", "Bearer t")], "phone 1", "a+b/c=", tokenInQuery: false);

        Assert.Equal("wss://chat.example.com/parley/ws?acks=true&device_id=phone%201&cursor=a%2Bb%2Fc%3D", request.Uri.AbsoluteUri);
        Assert.Equal([new KeyValuePair<string, string>("Authorization", "Bearer t")], request.Headers);
    }

    [Fact]
    public void BuildRequest_TokenInQuery_MovesTheTokenOutOfTheHeaders()
    {
        var request = Reconnector.BuildRequest(new Uri("http://localhost:8083/"), [new("Authorization", "Bearer t.k")], null, null, tokenInQuery: true);

        Assert.Equal("ws://localhost:8083/ws?acks=true&access_token=t.k", request.Uri.AbsoluteUri);
        Assert.Empty(request.Headers);
    }
}
