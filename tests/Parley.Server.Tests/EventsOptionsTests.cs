using Microsoft.Extensions.Configuration;
using Parley.Server.Events;
using Parley.Server.Tests.Infrastructure;

namespace Parley.Server.Tests;

/// <summary>Events settings are checked at start-up: a bad one stops the server with a line that names it.</summary>
[Trait("Store", "Independent")]
public sealed class EventsOptionsTests
{
    private static IReadOnlyList<string> Errors(EventsOptions options) =>
        new EventsOptionsValidator().Validate(null, options).Failures?.ToList() ?? [];

    [Fact]
    public void Validate_NothingConfigured_IsValidAndOff()
    {
        var options = new EventsOptions();

        Assert.Empty(Errors(options));
        Assert.False(options.KafkaEnabled);
    }

    [Theory]
    [InlineData("kafka-1", "Events:Kafka:BootstrapServers has 'kafka-1'")]
    [InlineData("kafka-1:9092,kafka-2:99999", "Events:Kafka:BootstrapServers has 'kafka-2:99999'")]
    public void Validate_ABootstrapServerWithoutPort_IsNamed(string servers, string expected)
    {
        var errors = Errors(new EventsOptions { Kafka = { BootstrapServers = servers } });

        Assert.Contains(errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_AcksOtherThanAll_AndSaslWithoutCredentials_AreRefused()
    {
        var errors = Errors(new EventsOptions
        {
            Kafka = { BootstrapServers = "kafka:9092", Acks = "1", SecurityProtocol = KafkaSecurityProtocol.SaslSsl },
        });

        Assert.Contains("Events:Kafka:Acks is '1'; the idempotent producer needs All.", errors);
        Assert.Contains(errors, e => e.Contains("Events:Kafka:SaslUsername", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_AWebhookWithoutUrlOrWithAShortSecret_IsNamed()
    {
        var errors = Errors(new EventsOptions
        {
            Webhooks = { ["crm"] = new WebhookOptions { Url = new Uri("ftp://example.org/x"), Secret = "short" } },
        });

        Assert.Contains("Events:Webhooks:crm:Url must be an absolute http or https URL.", errors);
        Assert.Contains("Events:Webhooks:crm:Secret must be set, at least 16 characters.", errors);
    }

    [Fact]
    public void Validate_NestedRanges_ClashingKafkaTimes_AndAMisspeltRecordType_AreNamed()
    {
        var errors = Errors(new EventsOptions
        {
            Kafka = { BootstrapServers = "kafka:9092", LingerMs = 5_000, DeliveryTimeout = TimeSpan.FromSeconds(3) },
            Notifications = { PreviewLength = 0 },
            Webhooks =
            {
                ["crm"] = new WebhookOptions
                {
                    Url = new Uri("https://crm.example.org/parley"), Secret = "0123456789abcdef0123", EventTypes = ["message.created", "message.create"],
                },
            },
        });

        Assert.Contains(errors, e => e.StartsWith("Events:Kafka:DeliveryTimeout (00:00:03) must be longer than Events:Kafka:LingerMs (5000 ms)", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Events:Notifications: ", StringComparison.Ordinal) && e.Contains("PreviewLength", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Events:Webhooks:crm:EventTypes has 'message.create', which is no record type", StringComparison.Ordinal));
        Assert.Equal(3, errors.Count);
    }

    [Fact]
    public void Validate_AWebhookAskingForNotificationsThatAreOff_IsNamed()
    {
        var errors = Errors(new EventsOptions
        {
            Notifications = { Enabled = false },
            Webhooks =
            {
                ["push"] = new WebhookOptions
                {
                    Url = new Uri("https://push.example.org/parley"), Secret = "0123456789abcdef0123", EventTypes = ["notification.message"],
                },
            },
        });

        Assert.Equal(
            ["Events:Webhooks:push:EventTypes has 'notification.message', but Events:Notifications:Enabled is false: none would be sent."], errors);
    }

    [Fact]
    public void Validate_ADeliveryTimeoutBeyondItsRange_AndARemovedSinkAfterShorterThanTwoLeases_AreNamed()
    {
        var errors = Errors(new EventsOptions
        {
            Kafka = { BootstrapServers = "kafka:9092", DeliveryTimeout = TimeSpan.FromDays(30) },
            LeaseDuration = TimeSpan.FromMinutes(10),
            RemovedSinkAfter = TimeSpan.FromMinutes(15),
        });

        Assert.Contains(errors, e => e.StartsWith("Events:Kafka: ", StringComparison.Ordinal) && e.Contains("DeliveryTimeout", StringComparison.Ordinal));
        Assert.Contains("Events:RemovedSinkAfter (00:15:00) must be at least twice Events:LeaseDuration (00:10:00).", errors);
        Assert.Equal(2, errors.Count);
    }

    [Fact]
    public void Validate_AWebhookSettingOfTheWrongType_NamesItInsteadOfDroppingTheEndpoint()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Events:Webhooks:crm:Url"] = "https://crm.example.org/parley",
            ["Events:Webhooks:crm:Secret"] = "0123456789abcdef0123",
            ["Events:Webhooks:crm:Timeout"] = "ten seconds",
        }).Build();
        var options = new EventsOptions();
        configuration.GetSection("Events").Bind(options);
        Assert.Empty(options.Webhooks); // what the binder does with it: the endpoint is gone

        var errors = new EventsOptionsValidator(configuration).Validate(null, options).Failures?.ToList() ?? [];

        var error = Assert.Single(errors);
        Assert.StartsWith("Events:Webhooks:crm: ", error, StringComparison.Ordinal);
        Assert.Contains("Events:Webhooks:crm:Timeout", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Server_WithAWebhookTimeoutThatIsNotATime_ExitsWith1NamingTheSetting()
    {
        var directory = Directory.CreateTempSubdirectory("parley-events-");
        try
        {
            var run = await ServerCommand.RunAsync(
                directory.FullName,
                "Development",
                [
                    "--urls", "http://127.0.0.1:0", "--Events:Webhooks:crm:Url=https://crm.example.org/parley",
                    "--Events:Webhooks:crm:Secret=0123456789abcdef0123", "--Events:Webhooks:crm:Timeout=abc",
                ]);

            Assert.Equal(1, run.ExitCode);
            Assert.Contains("Events:Webhooks:crm:Timeout", run.Error, StringComparison.Ordinal);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Server_WithAnInvalidBootstrapServer_ExitsWith1NamingTheSetting()
    {
        var directory = Directory.CreateTempSubdirectory("parley-events-");
        try
        {
            var run = await ServerCommand.RunAsync(
                directory.FullName, "Development", ["--urls", "http://127.0.0.1:0", "--Events:Kafka:BootstrapServers=kafka-without-port"]);

            Assert.Equal(1, run.ExitCode);
            Assert.Contains("Events:Kafka:BootstrapServers has 'kafka-without-port'", run.Error, StringComparison.Ordinal);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
