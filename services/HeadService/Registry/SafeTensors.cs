using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Graft.Heads.Registry;

/// <summary>A named float32 tensor held in managed memory.</summary>
public sealed record NamedTensor(string Name, long[] Shape, float[] Data);

/// <summary>Reads and writes the safetensors format (8-byte header length, JSON header, raw little-endian data),
/// so head weights are plain, inspectable files that Python tools read too.</summary>
public static class SafeTensors
{
    public static byte[] Serialize(IReadOnlyList<NamedTensor> tensors)
    {
        var header = new JsonObject();
        long offset = 0;
        foreach (var t in tensors)
        {
            long bytes = (long)t.Data.Length * sizeof(float);
            header[t.Name] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(t.Shape.Select(s => (JsonNode)JsonValue.Create(s)!).ToArray()),
                ["data_offsets"] = new JsonArray(JsonValue.Create(offset), JsonValue.Create(offset + bytes)),
            };
            offset += bytes;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padded = (json.Length + 7) / 8 * 8;
        var result = new byte[8 + padded + offset];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)padded);
        json.CopyTo(result, 8);
        result.AsSpan(8 + json.Length, padded - json.Length).Fill((byte)' ');
        long at = 8 + padded;
        foreach (var t in tensors)
        {
            var span = MemoryMarshal.AsBytes(t.Data.AsSpan());
            if (!BitConverter.IsLittleEndian)
            {
                throw new PlatformNotSupportedException("Big-endian hosts are not supported.");
            }
            span.CopyTo(result.AsSpan((int)at));
            at += span.Length;
        }
        return result;
    }

    /// <summary>Parses a file's bytes; throws <see cref="InvalidDataException"/> on any inconsistency.</summary>
    public static IReadOnlyList<NamedTensor> Deserialize(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 8)
        {
            throw new InvalidDataException("Weights file is shorter than its header.");
        }
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > (ulong)(bytes.Length - 8))
        {
            throw new InvalidDataException("Weights file header runs past the end of the file (truncated?).");
        }
        JsonObject header;
        try
        {
            header = JsonNode.Parse(bytes.Slice(8, (int)headerLength).ToArray())?.AsObject()
                ?? throw new InvalidDataException("Weights file header is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException("Weights file header is not valid JSON.", e);
        }
        var data = bytes[(8 + (int)headerLength)..];
        var result = new List<NamedTensor>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
            {
                continue;
            }
            try
            {
                var entry = node as JsonObject ?? throw new InvalidDataException($"Tensor '{name}' has no header entry.");
                if ((string?)entry["dtype"] != "F32")
                {
                    throw new InvalidDataException($"Tensor '{name}' has dtype {(string?)entry["dtype"]}; only F32 is supported.");
                }
                var shape = Longs(entry["shape"], name);
                var offsets = Longs(entry["data_offsets"], name);
                long count = shape.Aggregate(1L, (a, b) => a * b);
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] > data.Length || offsets[1] - offsets[0] != count * sizeof(float))
                {
                    throw new InvalidDataException($"Tensor '{name}' has data offsets outside the file or inconsistent with its shape.");
                }
                var values = new float[count];
                data[(int)offsets[0]..(int)offsets[1]].CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
                result.Add(new NamedTensor(name, shape, values));
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"Tensor '{name}' has a malformed header entry.", e);
            }
        }
        return result;
    }

    private static long[] Longs(JsonNode? node, string name)
        => (node as JsonArray ?? throw new InvalidDataException($"Tensor '{name}' lacks an array in its header entry."))
            .Select(n => n?.GetValue<long>() ?? throw new InvalidDataException($"Tensor '{name}' has a null in its header entry."))
            .ToArray();
}
