using Parley.Server.App;
using Parley.Server.Broadcasting;
using Parley.Server.Conversations;
using Parley.Server.Events;
using Parley.Server.Fanout;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Messages;
using Parley.Server.Observability;
using Parley.Server.Presence;
using Parley.Server.Realtime;
using Parley.Server.Realtime.Endpoint;
using Parley.Server.Receipts;
using Parley.Server.Storage;
using Parley.Server.Sync;
using Parley.Server.WebApp;

// help, --version, token and migrate answer here; a line that asks to serve (no command, or "serve") goes on.
if (await ParleyCommandLine.RunCommandAsync(args) is { } exitCode)
{
    return exitCode;
}

var builder = WebApplication.CreateBuilder(ParleyCommandLine.ServerOptions(args));
builder.AddParleyHosting();
builder.AddObservability();
builder.AddParleyAuth();
builder.AddStorage();
builder.AddRealtime();
builder.AddFanout();
builder.AddBroadcasting();
builder.AddConversations();
builder.AddPresence();
builder.AddMessages();
builder.AddReceipts();
builder.AddSync();
builder.AddEvents();
builder.AddWebSocketEndpoint();
builder.AddWebApp();

var app = builder.Build();
app.UseParleyHosting();
app.MapMetrics();
app.MapClientConfig();
app.MapConversations();
app.MapMessages();
app.MapReceipts();
app.MapPresence();
app.MapSync();
app.MapRealtime();
app.MapWebApp();
return await app.RunParleyAsync();
