using System.Buffers.Binary;
using System.Text;

namespace Graft.Deployment.Tests;

/// <summary>Reads the DT_NEEDED entries (the shared libraries a binary links) of a little-endian ELF64 file,
/// seeking to the few bytes it needs, so a 280 MB provider library costs a handful of small reads.</summary>
public static class ElfNeeded
{
    private const uint PtLoad = 1;
    private const uint PtDynamic = 2;
    private const long DtNeeded = 1;
    private const long DtStrtab = 5;

    public static IReadOnlyList<string> Read(string path)
    {
        using var file = File.OpenRead(path);
        var header = ReadAt(file, 0, 64);
        if (header[0] != 0x7f || header[1] != (byte)'E' || header[2] != (byte)'L' || header[3] != (byte)'F' || header[4] != 2 || header[5] != 1)
        {
            throw new InvalidDataException($"{path} is not a little-endian ELF64 file.");
        }

        var phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(0x20));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(0x36));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(0x38));

        var loads = new List<(ulong Vaddr, ulong Offset, ulong Size)>();
        (long Offset, long Size)? dynamic = null;
        for (var i = 0; i < phnum; i++)
        {
            var ph = ReadAt(file, phoff + (long)i * phentsize, phentsize);
            var type = BinaryPrimitives.ReadUInt32LittleEndian(ph);
            var offset = BinaryPrimitives.ReadUInt64LittleEndian(ph.AsSpan(0x08));
            var vaddr = BinaryPrimitives.ReadUInt64LittleEndian(ph.AsSpan(0x10));
            var filesz = BinaryPrimitives.ReadUInt64LittleEndian(ph.AsSpan(0x20));
            if (type == PtLoad)
            {
                loads.Add((vaddr, offset, filesz));
            }
            else if (type == PtDynamic)
            {
                dynamic = ((long)offset, (long)filesz);
            }
        }

        if (dynamic is null)
        {
            return [];
        }

        var entries = ReadAt(file, dynamic.Value.Offset, (int)dynamic.Value.Size);
        var needed = new List<long>();
        ulong strtab = 0;
        for (var at = 0; at + 16 <= entries.Length; at += 16)
        {
            var tag = BinaryPrimitives.ReadInt64LittleEndian(entries.AsSpan(at));
            var value = BinaryPrimitives.ReadUInt64LittleEndian(entries.AsSpan(at + 8));
            if (tag == 0)
            {
                break;
            }

            if (tag == DtNeeded)
            {
                needed.Add((long)value);
            }
            else if (tag == DtStrtab)
            {
                strtab = value;
            }
        }

        var segment = loads.Single(l => strtab >= l.Vaddr && strtab < l.Vaddr + l.Size);
        var strtabOffset = (long)(strtab - segment.Vaddr + segment.Offset);
        return needed.Select(n => ReadString(file, strtabOffset + n)).ToList();
    }

    private static byte[] ReadAt(FileStream file, long offset, int count)
    {
        var buffer = new byte[count];
        file.Seek(offset, SeekOrigin.Begin);
        file.ReadExactly(buffer);
        return buffer;
    }

    private static string ReadString(FileStream file, long offset)
    {
        var bytes = new List<byte>();
        file.Seek(offset, SeekOrigin.Begin);
        for (var b = file.ReadByte(); b > 0; b = file.ReadByte())
        {
            bytes.Add((byte)b);
        }

        return Encoding.ASCII.GetString(bytes.ToArray());
    }
}
