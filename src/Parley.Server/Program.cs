using Parley.Server.Conversations;
using Parley.Server.Hosting;
using Parley.Server.Hosting.Auth;
using Parley.Server.Messages;
using Parley.Server.Presence;
using Parley.Server.Realtime;
using Parley.Server.Receipts;
using Parley.Server.Storage;
using Parley.Server.Sync;

if (TokenCommand.TryRun(args, out var exitCode))
{
    return exitCode;
}

if (await MigrateCommand.TryRunAsync(args) is { } migrated)
{
    return migrated;
}

// Configuration files live beside the binaries; data files (parley.db) in the working directory.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.AddParleyHosting();
builder.AddParleyAuth();
builder.AddStorage();
builder.AddRealtime();
builder.AddMessaging();
builder.AddSync();

var app = builder.Build();
app.UseParleyHosting();
app.MapClientConfig();
app.MapConversations();
app.MapMessages();
app.MapReceipts();
app.MapPresence();
app.MapSync();
app.MapRealtime();
return await app.RunParleyAsync();
