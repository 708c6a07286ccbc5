using System.Diagnostics;
using Graft.Backbone;
using Graft.Backbone.Imaging;
using Graft.Backbone.Model;
using Graft.Reliability.Tests.Support;
using Graft.Testing;
using SkiaSharp;
using Xunit.Abstractions;

namespace Graft.Reliability.Tests;

/// <summary>A seeded mutation fuzz of the backbone's decode-and-preprocess path (<see cref="Preprocessor"/>, the same
/// code the service runs for every image). Every mutated input must either become a finite input tensor or be refused
/// with <see cref="InputRejectedException"/>: no other exception, no hang, no unbounded allocation.
/// The default run is short; <c>tests/fuzz/run.sh</c> runs it long (GRAFT_FUZZ_CASES, GRAFT_FUZZ_SEED).</summary>
public sealed class FuzzTests(ITestOutputHelper output)
{
    /// <summary>Longest one case may take before it counts as a hang (generous: the machine is shared).</summary>
    private static readonly TimeSpan CaseLimit = TimeSpan.FromSeconds(10);

    /// <summary>Managed bytes one case may allocate: the 3x224x224 tensor, the encoded copy and slack.</summary>
    private const long ManagedBoundPerCase = 32L << 20;

    /// <summary>How far the fuzzing process's peak RSS may rise over the whole run. Generous, because uncollected garbage
    /// (a 0.6 MB tensor per case) counts until the GC runs; it still catches any case that decodes what a hostile header
    /// claims (one 100000x100000 image alone would be 40 GB).</summary>
    private const long PeakGrowthBound = 1L << 30;

    /// <summary>How far RSS measured after a full, compacting GC may rise from a quarter of the run to its end: native
    /// memory (Skia codecs and bitmaps) that is never freed shows up here, garbage the GC has not yet collected does not.</summary>
    private const long LeakBound = 128L << 20;

    private static ProcessMemory SettledMemory()
    {
        System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        return ProcessMemory.Self();
    }

    /// <summary>The pixel limit the service uses by default (Graft:Backbone:MaxPixels).</summary>
    private const long MaxPixels = 40_000_000;

    [Fact]
    public async Task Mutated_jpeg_and_png_samples_never_crash_hang_or_allocate_without_bound_in_decode_and_preprocess()
    {
        // Arrange
        var cases = int.TryParse(Environment.GetEnvironmentVariable("GRAFT_FUZZ_CASES"), out var n) ? n : 400;
        var seed = int.TryParse(Environment.GetEnvironmentVariable("GRAFT_FUZZ_SEED"), out var s) ? s : 20261128;
        var profile = BackboneProfiles.Resolve(new BackboneOptions(), AppContext.BaseDirectory);
        var preprocessor = Preprocessor.Create(profile, MaxPixels);
        var seeds = SeedInputs();
        var random = new Random(seed);
        var accepted = 0;
        var rejected = 0;
        var slowest = TimeSpan.Zero;
        long mostManaged = 0;
        var memoryBefore = ProcessMemory.Self();
        var clock = Stopwatch.StartNew();

        var settledAt = Math.Max(1, cases / 4);
        var settled = default(ProcessMemory);
        var checkpoints = new List<string>();

        // Act
        for (var i = 0; i < cases; i++)
        {
            if (i == settledAt || (i > 0 && i % Math.Max(1, cases / 8) == 0))
            {
                var now = SettledMemory();
                checkpoints.Add($"{i}: {now.ResidentMiB:0} MiB");
                if (i == settledAt)
                {
                    settled = now;
                }
            }
            var (origin, input) = Mutate(seeds[random.Next(seeds.Count)], random);
            var started = Stopwatch.GetTimestamp();
            // On the thread pool, as in the service (a hung case still fails the WhenAny below).
            var run = Task.Run(() =>
            {
                var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    var tensor = preprocessor.Preprocess(input);
                    Assert.Equal(3 * 224 * 224, tensor.Length);
                    Assert.All(tensor, v => Assert.True(float.IsFinite(v)));
                    return (Accepted: true, Allocated: GC.GetAllocatedBytesForCurrentThread() - allocatedBefore, Error: (Exception?)null);
                }
                catch (InputRejectedException)
                {
                    return (Accepted: false, Allocated: GC.GetAllocatedBytesForCurrentThread() - allocatedBefore, Error: (Exception?)null);
                }
                catch (Exception e)
                {
                    return (Accepted: false, Allocated: 0L, Error: e);
                }
            });

            // Assert (per case)
            var finished = await Task.WhenAny(run, Task.Delay(CaseLimit)) == run;
            string Reproduce() => $"case {i} (seed {seed}, from {origin}, {input.Length} bytes; saved to {Save(input, seed, i)})";
            if (!finished)
            {
                Assert.Fail($"decode + preprocess did not finish within {CaseLimit.TotalSeconds} s: {Reproduce()}");
            }
            var result = await run;
            if (result.Error is not null)
            {
                Assert.Fail($"{result.Error.GetType().Name} instead of InputRejectedException: {result.Error.Message}; {Reproduce()}");
            }
            if (result.Allocated >= ManagedBoundPerCase)
            {
                Assert.Fail($"{result.Allocated >> 20} MiB allocated in one case: {Reproduce()}");
            }
            if (result.Accepted) accepted++; else rejected++;
            slowest = TimeSpan.FromTicks(Math.Max(slowest.Ticks, Stopwatch.GetElapsedTime(started).Ticks));
            mostManaged = Math.Max(mostManaged, result.Allocated);
        }
        var memoryAfter = ProcessMemory.Self();
        var settledAfter = SettledMemory();
        checkpoints.Add($"{cases}: {settledAfter.ResidentMiB:0} MiB");

        // Assert (whole run)
        Assert.True(settledAfter.ResidentBytes - settled.ResidentBytes < LeakBound,
            $"RSS after a full GC kept growing from case {settledAt} to the end: {string.Join(", ", checkpoints)}");
        Assert.True(memoryAfter.PeakBytes - memoryBefore.PeakBytes < PeakGrowthBound,
            $"peak RSS grew {(memoryAfter.PeakBytes - memoryBefore.PeakBytes) >> 20} MiB over {cases} cases ({memoryBefore} -> {memoryAfter}); after full GCs: {string.Join(", ", checkpoints)}");
        Assert.True(accepted > 0 && rejected > 0, $"the mutations should exercise both outcomes: {accepted} decoded, {rejected} refused");
        var line = $"fuzz (seed {seed}): {cases} mutated inputs in {clock.Elapsed.TotalSeconds:0.0} s, {accepted} decoded to finite tensors, {rejected} refused with InputRejectedException, " +
            $"0 other exceptions, 0 hangs; slowest case {slowest.TotalMilliseconds:0} ms; most managed allocation in one case {mostManaged / 1048576.0:0.0} MiB; " +
            $"peak RSS {memoryBefore.PeakMiB:0} -> {memoryAfter.PeakMiB:0} MiB; RSS after full GC at case {string.Join(", ", checkpoints)}";
        FigureLog.Add(line);
        output.WriteLine(line);
    }

    /// <summary>Valid starting points: sample PNGs (grey, 28x28), and JPEG/PNG re-encodings in colour and larger sizes.</summary>
    private static List<(string Name, byte[] Bytes)> SeedInputs()
    {
        var list = new List<(string, byte[])>();
        foreach (var sample in SampleImages.Load("test").Where((_, i) => i % 25 == 0))
        {
            var png = sample.ReadBytes();
            list.Add(($"{Path.GetFileName(sample.Path)} (png)", png));
            using var bitmap = SKBitmap.Decode(png);
            using var colour = bitmap.Resize(new SKImageInfo(96, 64, SKColorType.Rgba8888, SKAlphaType.Premul), new SKSamplingOptions(SKFilterMode.Linear));
            using var image = SKImage.FromBitmap(colour);
            list.Add(($"{Path.GetFileName(sample.Path)} (jpeg 96x64)", image.Encode(SKEncodedImageFormat.Jpeg, 85).ToArray()));
            list.Add(($"{Path.GetFileName(sample.Path)} (png 96x64)", image.Encode(SKEncodedImageFormat.Png, 100).ToArray()));
        }
        list.Add(("cmyk.jpg", HostileImages.CmykJpeg()));
        list.Add(("animated.gif", HostileImages.AnimatedGif()));
        list.Add(("16-bit png", HostileImages.Png16Bit()));
        return list;
    }

    /// <summary>One to eight random edits of the kinds that break parsers: bit flips, interesting bytes, header size
    /// fields, truncation, deleted/duplicated/inserted runs.</summary>
    private static (string Origin, byte[] Bytes) Mutate((string Name, byte[] Bytes) seed, Random random)
    {
        var bytes = new List<byte>(seed.Bytes);
        var edits = random.Next(1, 9);
        for (var e = 0; e < edits && bytes.Count > 0; e++)
        {
            var at = random.Next(bytes.Count);
            switch (random.Next(7))
            {
                case 0:
                    bytes[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    bytes[at] = (byte)new[] { 0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE }[random.Next(6)];
                    break;
                case 2:
                    // Header size fields: PNG IHDR width/height at 16..23; a JPEG SOF's height/width follow FFC0/FFC2.
                    var field = HeaderSizeField(bytes, random);
                    if (field >= 0)
                    {
                        bytes[field] = (byte)random.Next(256);
                        bytes[field + 1] = 0xFF;
                    }
                    break;
                case 3:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case 4:
                    bytes.RemoveRange(at, Math.Min(bytes.Count - at, random.Next(1, 64)));
                    break;
                case 5:
                    var length = Math.Min(bytes.Count - at, random.Next(1, 64));
                    bytes.InsertRange(at, bytes.GetRange(at, length));
                    break;
                default:
                    var noise = new byte[random.Next(1, 32)];
                    random.NextBytes(noise);
                    bytes.InsertRange(at, noise);
                    break;
            }
        }
        return ($"{seed.Name} with {edits} edit(s)", bytes.ToArray());
    }

    private static int HeaderSizeField(List<byte> bytes, Random random)
    {
        if (bytes.Count > 24 && bytes[1] == (byte)'P' && bytes[2] == (byte)'N')
        {
            return 16 + random.Next(4) * 2;
        }
        for (var i = 2; i + 8 < bytes.Count; i++)
        {
            if (bytes[i] == 0xFF && bytes[i + 1] is 0xC0 or 0xC2)
            {
                return i + 5 + random.Next(2) * 2;
            }
        }
        return -1;
    }

    private static string Save(byte[] input, int seed, int index)
    {
        var path = Path.Combine(Path.GetTempPath(), $"graft-fuzz-{seed}-{index}.bin");
        File.WriteAllBytes(path, input);
        return path;
    }
}
