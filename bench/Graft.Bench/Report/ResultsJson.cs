using System.Text;
using System.Text.Json;

namespace Graft.Bench.Report;

/// <summary>Sets one top-level property of a results.json another run wrote, leaving every other byte as it was.</summary>
/// <remarks>Neither a round trip through <see cref="Results"/> (it drops what this version of the harness does not
/// know) nor through <c>JsonNode</c> (it re-escapes strings: the serializer writes a date's "+00:00" raw, a re-written
/// string value gets "\u002B00:00") keeps the rest of the file intact; splicing the text does.</remarks>
public static class ResultsJson
{
    /// <param name="existing">The file's UTF-8 bytes: an indented JSON object, as <c>JsonSerializer</c> writes it.</param>
    /// <param name="value">The new value, serialized (indented) on its own.</param>
    public static byte[] SetProperty(byte[] existing, string name, string value)
    {
        // The value nested one level: its continuation lines indented by the two spaces of a top-level property.
        var property = Encoding.UTF8.GetBytes($"\"{name}\": {value.ReplaceLineEndings("\n  ")}");
        var reader = new Utf8JsonReader(existing, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            throw new InvalidDataException("results.json does not hold a JSON object.");
        }
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var start = (int)reader.TokenStartIndex;
            var found = reader.ValueTextEquals(name);
            reader.Read();
            reader.Skip();
            if (found)
            {
                return [.. existing.AsSpan(0, start), .. property, .. existing.AsSpan((int)reader.BytesConsumed)];
            }
        }
        if (reader.TokenType != JsonTokenType.EndObject)
        {
            throw new InvalidDataException("results.json does not hold a JSON object.");
        }
        // Absent: appended as the last property, after the last value (whose end is where the closing brace's
        // indentation starts).
        var close = (int)reader.TokenStartIndex;
        var lastValueEnd = close;
        while (lastValueEnd > 0 && existing[lastValueEnd - 1] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') lastValueEnd--;
        var empty = existing[lastValueEnd - 1] == (byte)'{';
        return [.. existing.AsSpan(0, lastValueEnd), .. Encoding.UTF8.GetBytes(empty ? "\n  " : ",\n  "), .. property, (byte)'\n', .. existing.AsSpan(close)];
    }
}
