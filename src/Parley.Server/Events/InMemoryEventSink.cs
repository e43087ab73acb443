namespace Parley.Server.Events;

/// <summary>
/// Keeps published records in memory, in order: the sink of tests (and of the contract suite's reference). <see cref="IsDown"/>
/// makes it refuse batches, as an unreachable broker would.
/// </summary>
internal sealed class InMemoryEventSink(string name = "memory") : IEventSink
{
    private readonly Lock _lock = new();
    private readonly List<EventRecord> _records = [];
    private readonly List<int> _batches = [];

    public string Name => name;

    /// <summary>While set, every batch fails and nothing of it is kept.</summary>
    public bool IsDown { get; set; }

    /// <summary>Batches refused while down.</summary>
    public int Refused { get; private set; }

    public Task PublishAsync(IReadOnlyList<EventRecord> records, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (IsDown)
            {
                Refused++;
                throw new EventSinkException($"The sink {name} is down.");
            }

            _records.AddRange(records);
            _batches.Add(records.Count);
        }

        return Task.CompletedTask;
    }

    /// <summary>The number of records of each batch published so far, in publishing order.</summary>
    public IReadOnlyList<int> Batches
    {
        get
        {
            lock (_lock)
            {
                return [.. _batches];
            }
        }
    }

    /// <summary>A snapshot of every record published so far, in publishing order.</summary>
    public IReadOnlyList<EventRecord> Records
    {
        get
        {
            lock (_lock)
            {
                return [.. _records];
            }
        }
    }
}
