namespace Parley.Server.Storage;

/// <summary>
/// Why the store refused a write by itself, before any rule was asked: it does not have what the write is about.
/// Nothing was written. The feature that asked says what this means for its caller (over HTTP: which 404).
/// </summary>
internal enum StoreRefusal
{
    /// <summary>No conversation has the id.</summary>
    ConversationNotFound,

    /// <summary>The user is not (or no longer) a member of the conversation.</summary>
    NotAMember,

    /// <summary>No message has the id; for a receipt, none in the conversation that the member can see.</summary>
    MessageNotFound,
}

/// <summary>A write without rules of the caller's: applied (<see cref="Value"/>), or refused by the store with nothing written.</summary>
internal readonly struct StoreResult<T>
{
    private StoreResult(T? value, StoreRefusal? refusal)
    {
        Value = value;
        Refusal = refusal;
    }

    public T? Value { get; }

    public StoreRefusal? Refusal { get; }

    public bool IsApplied => Refusal is null;

    public static implicit operator StoreResult<T>(T value) => new(value, null);

    public static implicit operator StoreResult<T>(StoreRefusal refusal) => new(default, refusal);
}

/// <summary>
/// A write decided by the caller's rules: applied (<see cref="Value"/>), refused by the store (<see cref="Refusal"/>), or
/// rejected by the rules (<see cref="Rejection"/>: what the rule returned, passed back untouched, so the store needs
/// to know nothing of the caller's errors). Nothing is written unless it is applied. Rules that plan a change (a
/// membership change) return this type too: the plan as <see cref="Value"/>, or their rejection.
/// </summary>
internal readonly struct StoreResult<T, TRejection>
    where TRejection : class
{
    private StoreResult(T? value, StoreRefusal? refusal, TRejection? rejection)
    {
        Value = value;
        Refusal = refusal;
        Rejection = rejection;
    }

    public T? Value { get; }

    public StoreRefusal? Refusal { get; }

    public TRejection? Rejection { get; }

    public bool IsApplied => Refusal is null && Rejection is null;

    public static implicit operator StoreResult<T, TRejection>(T value) => new(value, null, null);

    public static implicit operator StoreResult<T, TRejection>(StoreRefusal refusal) => new(default, refusal, null);

    public static implicit operator StoreResult<T, TRejection>(TRejection rejection) => new(default, null, rejection);

    /// <summary>Why it was not applied, in the caller's terms: the rules' rejection as it is, or the store's refusal as <paramref name="refused"/> says.</summary>
    public TRejection Failure(Func<StoreRefusal, TRejection> refused) =>
        Rejection ?? refused(Refusal ?? throw new InvalidOperationException("The write was applied: there is no failure."));

    /// <summary>The same failure for a write with another value (the plan's rejection becomes the write's).</summary>
    public StoreResult<TOther, TRejection> FailureAs<TOther>() =>
        Rejection is { } rejection ? rejection
        : Refusal is { } refusal ? refusal
        : throw new InvalidOperationException("The write was applied: there is no failure.");
}
