using Parley.Server.Protocol;

namespace Parley.Server.Hosting;

/// <summary>Field errors collected while validating one request.</summary>
internal sealed class FieldErrors
{
    // Made with the first error: every send is validated, and almost all of them are valid.
    private Dictionary<string, List<string>>? _errors;

    public bool Any => _errors is { Count: > 0 };

    public int Count => _errors?.Values.Sum(v => v.Count) ?? 0;

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
        _errors ??= new Dictionary<string, List<string>>(StringComparer.Ordinal);
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
        if (_errors is not { Count: > 0 })
        {
            throw new InvalidOperationException("No field has an error.");
        }

        var first = _errors.First();
        var message = _errors.Count == 1 && first.Value.Count == 1
            ? $"'{first.Key}' {first.Value[0]}."
            : "The request has invalid fields; see 'errors'.";
        return new ApiError(400, ErrorCodes.ValidationFailed, message, _errors.ToDictionary(e => e.Key, e => e.Value.ToArray()));
    }
}
