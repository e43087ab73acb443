using Parley.Server.Protocol;

namespace Parley.Server.Hosting;

/// <summary>Field errors collected while validating one request.</summary>
internal sealed class FieldErrors
{
    private readonly Dictionary<string, List<string>> _errors = new(StringComparer.Ordinal);

    public bool Any => _errors.Count > 0;

    public int Count => _errors.Values.Sum(v => v.Count);

    /// <summary>Applies <see cref="TextRules"/> to a field; false (and the error added) when it breaks them.</summary>
    public bool CheckText(string field, string? value, bool multiLine = false)
    {
        if (TextRules.Check(value, multiLine) is not { } why)
        {
            return true;
        }

        Add(field, why);
        return false;
    }

    public void Add(string field, string message)
    {
        if (!_errors.TryGetValue(field, out var list))
        {
            _errors[field] = list = [];
        }

        list.Add(message);
    }

    public Guid RequiredUuid(string field, string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            Add(field, "is required");
            return Guid.Empty;
        }

        return OptionalUuid(field, value) ?? Guid.Empty;
    }

    public Guid? OptionalUuid(string field, string? value)
    {
        if (value is null)
        {
            return null;
        }

        if (Identifiers.TryParseUuid(value, out var id))
        {
            return id;
        }

        Add(field, "must be a UUID");
        return null;
    }

    public ApiError ToError()
    {
        var first = _errors.First();
        var message = _errors.Count == 1 && first.Value.Count == 1
            ? $"'{first.Key}' {first.Value[0]}."
            : "The request has invalid fields; see 'errors'.";
        return new ApiError(400, ErrorCodes.ValidationFailed, message, _errors.ToDictionary(e => e.Key, e => e.Value.ToArray()));
    }
}
