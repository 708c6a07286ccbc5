using Google.Protobuf;
using Graft.Reliability.Tests.Support;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace Graft.Reliability.Tests;

/// <summary>Hostile and unusual input at every public entry point. Each case gets its precise status (or a normal answer
/// when the input is unusual but valid), the next ordinary request is served, and memory stays bounded.</summary>
[Collection(ReliabilityCollection.Name)]
public sealed class HostileInputTests(ReliabilityFixture fixture, ITestOutputHelper output)
{
    /// <summary>Most a single hostile case may raise a service's peak resident memory.</summary>
    private const long PeakGrowthBound = 256L << 20;

    private ReliabilityStack Stack => fixture.Stack;

    public static TheoryData<string> ImageCases => new(Images.Keys);

    private static readonly Dictionary<string, (Func<byte[]> Make, StatusCode Expected)> Images = new()
    {
        ["zero bytes"] = (() => [], StatusCode.InvalidArgument),
        ["truncated JPEG"] = (HostileImages.TruncatedJpeg, StatusCode.InvalidArgument),
        ["4 KiB of random bytes"] = (() => HostileImages.RandomBytes(4096, seed: 7), StatusCode.InvalidArgument),
        ["PNG header claiming 100000x100000"] = (() => HostileImages.PngBomb(), StatusCode.ResourceExhausted),
        ["message over the 16 MiB limit"] = (() => HostileImages.RandomBytes(17 << 20, seed: 8), StatusCode.ResourceExhausted),
        ["CMYK JPEG"] = (HostileImages.CmykJpeg, StatusCode.OK),
        ["16-bit PNG"] = (() => HostileImages.Png16Bit(), StatusCode.OK),
        ["animated GIF"] = (HostileImages.AnimatedGif, StatusCode.OK),
        ["1x1 pixel"] = (HostileImages.OnePixel, StatusCode.OK),
        ["grayscale PNG"] = (() => HostileImages.Grayscale(), StatusCode.OK),
        ["PNG with alpha"] = (() => HostileImages.WithAlpha(), StatusCode.OK),
        ["colour JPEG"] = (() => HostileImages.SampleJpeg(), StatusCode.OK),
    };

    [Theory]
    [MemberData(nameof(ImageCases))]
    public async Task A_hostile_or_unusual_image_gets_its_precise_status_and_the_next_request_is_served_within_bounded_memory(string name)
    {
        // Arrange
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var (make, expected) = Images[name];
        var image = ByteString.CopyFrom(make());
        var before = Memory();

        // Act
        PredictReply? reply = null;
        RpcException? failure = null;
        try
        {
            reply = await fixture.PredictAsync(image, ReliabilityFixture.Classifier, ReliabilityFixture.Regressor);
        }
        catch (RpcException e)
        {
            failure = e;
        }
        var next = await fixture.PredictAsync(fixture.TestImage(3), ReliabilityFixture.Classifier);
        var after = Memory();

        // Assert
        var code = failure?.StatusCode ?? StatusCode.OK;
        Assert.True(code == expected, $"{name}: expected {expected}, got {code}: {failure?.Status.Detail}");
        if (failure is not null)
        {
            Statuses.AssertReadable(failure, name);
        }
        else
        {
            Assert.Equal(2, reply!.Results.Count);
            Assert.All(reply.Results[0].Top, t => Assert.InRange(t.Probability, 0, 1));
            Assert.True(double.IsFinite(reply.Results[1].Value));
        }
        Assert.Single(next.Results);
        AssertBounded(name, before, after);
        Figure($"image '{name}' ({image.Length} bytes): {code}{(failure is null ? $", top label {reply!.Results[0].Top[0].Label}" : $" \"{failure.Status.Detail}\"")}; next request served; {Growth(before, after)}");
    }

    [Fact]
    public async Task Tensors_of_the_wrong_shape_or_with_nan_or_infinity_are_invalid_arguments_at_the_backbone_and_the_heads()
    {
        // Arrange
        var backbone = Stack.BackboneClient;
        var valid = await backbone.ExtractAsync(new ExtractRequest { Image = fixture.TestImage() }, deadline: Deadline());
        var heads = ReliabilityStack.HeadsClient(Stack.HeadsB);
        var before = Memory();
        var full = 3 * 224 * 224;
        Tensor Tensor(long[] shape, int count, float poison = 0, int at = -1)
        {
            var t = new Tensor { Shape = { shape } };
            t.Data.AddRange(Enumerable.Range(0, count).Select(i => i == at ? poison : 0.5f));
            return t;
        }
        HeadPredictRequest Features(Func<float[], float[]> change) =>
            new() { Features = { change(valid.Features.ToArray()) }, BackboneFingerprint = valid.Fingerprint, Heads = { ReliabilityFixture.Classifier } };

        var cases = new (string Name, StatusCode Expected, Func<Task> Call)[]
        {
            ("backbone tensor of shape [3,100,100]", StatusCode.InvalidArgument,
                () => backbone.ExtractAsync(new ExtractRequest { Tensor = Tensor([3, 100, 100], 30000) }, deadline: Deadline()).ResponseAsync),
            ("backbone tensor [3,224,224] with 10 values", StatusCode.InvalidArgument,
                () => backbone.ExtractAsync(new ExtractRequest { Tensor = Tensor([3, 224, 224], 10) }, deadline: Deadline()).ResponseAsync),
            ("backbone tensor holding NaN", StatusCode.InvalidArgument,
                () => backbone.ExtractAsync(new ExtractRequest { Tensor = Tensor([3, 224, 224], full, float.NaN, 777) }, deadline: Deadline()).ResponseAsync),
            ("backbone tensor holding +Inf", StatusCode.InvalidArgument,
                () => backbone.ExtractAsync(new ExtractRequest { Tensor = Tensor([3, 224, 224], full, float.PositiveInfinity, 0) }, deadline: Deadline()).ResponseAsync),
            ("backbone request with no input", StatusCode.InvalidArgument,
                () => backbone.ExtractAsync(new ExtractRequest(), deadline: Deadline()).ResponseAsync),
            ("head features holding NaN", StatusCode.InvalidArgument,
                () => heads.PredictAsync(Features(f => { f[5] = float.NaN; return f; }), deadline: Deadline()).ResponseAsync),
            ("head features holding -Inf", StatusCode.InvalidArgument,
                () => heads.PredictAsync(Features(f => { f[^1] = float.NegativeInfinity; return f; }), deadline: Deadline()).ResponseAsync),
            ("head features of the wrong length (100)", StatusCode.FailedPrecondition,
                () => heads.PredictAsync(Features(f => f[..100]), deadline: Deadline()).ResponseAsync),
            ("head features from another backbone", StatusCode.FailedPrecondition,
                () => heads.PredictAsync(new HeadPredictRequest { Features = { valid.Features }, BackboneFingerprint = "sha256:another-backbone", Heads = { ReliabilityFixture.Classifier } }, deadline: Deadline()).ResponseAsync),
        };

        // Act + Assert
        foreach (var (name, expected, call) in cases)
        {
            var e = await Statuses.ExpectAsync(expected, call, name);
            await AssertNextRequestServedAsync(name);
            Figure($"{name}: {e.StatusCode} \"{e.Status.Detail}\"; next request served");
        }
        var after = Memory();
        AssertBounded("tensor cases", before, after);
        Figure($"tensor cases: {Growth(before, after)}");
    }

    [Fact]
    public async Task Bad_training_data_and_absurd_hyperparameters_are_refused_with_invalid_argument_naming_the_problem()
    {
        // Arrange
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var images = fixture.Train.Take(10).ToList();
        var before = Memory();
        HeadSpec Spec(HeadKind kind, Action<HeadSpec>? change = null)
        {
            var s = new HeadSpec { Name = "hostile-training", Kind = kind, Epochs = 3 };
            change?.Invoke(s);
            return s;
        }
        var cases = new (string Name, HeadSpec Spec, IEnumerable<LabelledImage> Examples, string Mentions)[]
        {
            ("NaN regression targets", Spec(HeadKind.Regressor), images.Select(ReliabilityFixture.Measured).Select((e, i) => { if (i == 3) e.Value = double.NaN; return e; }), "finite"),
            ("infinite regression target", Spec(HeadKind.Regressor), images.Select(ReliabilityFixture.Measured).Select((e, i) => { if (i == 0) e.Value = double.PositiveInfinity; return e; }), "finite"),
            ("a single class", Spec(HeadKind.Classifier), images.Select(s => ReliabilityFixture.Labelled(s)).Select(e => { e.Label = "bag"; return e; }), "two classes"),
            ("too few rows (one image)", Spec(HeadKind.Regressor), images.Take(1).Select(ReliabilityFixture.Measured), "too few"),
            ("labels for a regressor", Spec(HeadKind.Regressor), images.Select(ReliabilityFixture.Labelled), "numeric target"),
            ("numbers for a classifier", Spec(HeadKind.Classifier), images.Select(ReliabilityFixture.Measured), "label"),
            ("epochs = 10^9", Spec(HeadKind.Regressor, s => s.Epochs = 1_000_000_000), images.Select(ReliabilityFixture.Measured), "epochs"),
            ("learning rate < 0", Spec(HeadKind.Regressor, s => s.LearningRate = -0.01), images.Select(ReliabilityFixture.Measured), "learning_rate"),
            ("learning rate NaN", Spec(HeadKind.Regressor, s => s.LearningRate = double.NaN), images.Select(ReliabilityFixture.Measured), "learning_rate"),
            ("batch size 0", Spec(HeadKind.Regressor, s => s.BatchSize = 0), images.Select(ReliabilityFixture.Measured), "batch_size"),
            ("no kind", Spec(HeadKind.Unspecified), images.Select(ReliabilityFixture.Measured), "kind"),
        };

        // Act + Assert
        foreach (var (name, spec, examples, mentions) in cases)
        {
            var e = await Statuses.ExpectAsync(StatusCode.InvalidArgument, () => TrainExpectingFailureAsync(spec, examples), name);
            Assert.Contains(mentions, e.Status.Detail, StringComparison.OrdinalIgnoreCase);
            await AssertNextRequestServedAsync(name);
            Figure($"training with {name}: {e.StatusCode} \"{e.Status.Detail}\"");
        }
        await AssertHeadAbsentAsync("hostile-training");
        var after = Memory();
        AssertBounded("training cases", before, after);
        Figure($"training cases: {Growth(before, after)}");
    }

    [Fact]
    public async Task Ten_thousand_distinct_classes_are_refused_at_the_class_limit_without_exhausting_memory()
    {
        // Arrange: real features of one image, 10,000 rows each with its own label, streamed to one replica in chunks.
        var valid = await Stack.BackboneClient.ExtractAsync(new ExtractRequest { Image = fixture.TestImage() }, deadline: Deadline());
        var replica = ReliabilityStack.HeadsClient(Stack.HeadsB);
        var before = Memory();

        // Act
        var e = await Statuses.ExpectAsync(StatusCode.InvalidArgument, async () =>
        {
            using var call = replica.Train(deadline: DateTime.UtcNow.AddMinutes(2));
            try
            {
                await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Spec = new HeadSpec { Name = "ten-thousand-classes", Kind = HeadKind.Classifier, Epochs = 1, BackboneFingerprint = valid.Fingerprint } });
                for (var chunk = 0; chunk < 20; chunk++)
                {
                    var rows = new FeatureRows();
                    rows.Rows.AddRange(Enumerable.Range(chunk * 500, 500).Select(i => new FeatureRow { Features = { valid.Features }, Label = $"class-{i:D5}" }));
                    await call.RequestStream.WriteAsync(new TrainHeadRowsRequest { Rows = rows });
                }
                await call.RequestStream.CompleteAsync();
            }
            catch (Exception ex) when (ex is RpcException or InvalidOperationException)
            {
                // Refused mid-stream; the status comes from the response.
            }
            await foreach (var _ in call.ResponseStream.ReadAllAsync())
            {
            }
        }, "10,000 classes");
        await AssertNextRequestServedAsync("10,000 classes");
        var after = Memory();

        // Assert
        Assert.Contains("class count", e.Status.Detail, StringComparison.Ordinal);
        AssertBounded("10,000 classes", before, after);
        await AssertHeadAbsentAsync("ten-thousand-classes");
        Figure($"10,000 distinct classes (20 x 500 rows of 512 features): {e.StatusCode} \"{e.Status.Detail}\"; {Growth(before, after)}");
    }

    public static TheoryData<string, string> HeadNames => new()
    {
        { "../x", "a parent-directory escape" },
        { "/tmp/graft-escape-" + EscapeMarker, "an absolute path" },
        { new string('a', 10 * 1024), "10 KB long" },
        { "größe-längen", "unicode" },
        { "..", "dot-dot alone" },
        { "kind/../../x", "a nested escape" },
        { "UPPER", "upper case" },
        { "x\n", "a trailing newline" },
    };

    private static readonly string EscapeMarker = Guid.NewGuid().ToString("N");

    [Theory]
    [MemberData(nameof(HeadNames))]
    public async Task A_hostile_head_name_is_refused_everywhere_and_nothing_is_written_outside_the_registry(string name, string what)
    {
        // Arrange
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var examples = fixture.Train.Take(10).Select(ReliabilityFixture.Measured).ToList();
        var client = fixture.Client;

        // Act + Assert: train, read, predict, activate and delete under that name.
        var train = await Statuses.ExpectAsync(StatusCode.InvalidArgument,
            () => TrainExpectingFailureAsync(new HeadSpec { Name = name, Kind = HeadKind.Regressor, Epochs = 2 }, examples), $"train '{what}'");
        await Statuses.ExpectAsync(StatusCode.InvalidArgument,
            () => client.GetHeadAsync(new GetHeadRequest { Name = name }, Stack.PredictHeaders, Deadline()).ResponseAsync, $"get '{what}'");
        await Statuses.ExpectAsync(StatusCode.InvalidArgument,
            () => fixture.PredictAsync(fixture.TestImage(), name), $"predict '{what}'");
        await Statuses.ExpectAsync(StatusCode.InvalidArgument,
            () => client.ActivateHeadAsync(new ActivateVersionRequest { Name = name, Version = 1 }, Stack.AdminHeaders, Deadline()).ResponseAsync, $"activate '{what}'");
        await Statuses.ExpectAsync(StatusCode.InvalidArgument,
            () => client.DeleteHeadAsync(new DeleteHeadRequest { Name = name }, Stack.AdminHeaders, Deadline()).ResponseAsync, $"delete '{what}'");
        await AssertNextRequestServedAsync(what);

        Assert.Equal(["registry"], Directory.GetFileSystemEntries(Stack.WorkDirectory).Select(Path.GetFileName));
        Assert.False(Path.Exists("/tmp/graft-escape-" + EscapeMarker));
        Assert.All(Directory.GetDirectories(Stack.RegistryDirectory).Select(Path.GetFileName),
            d => Assert.Matches("^[a-z0-9][a-z0-9._-]{0,62}$", d!));
        Assert.True(train.Status.Detail.Length < 500, $"the refusal echoes at most a prefix of the name: {train.Status.Detail.Length} characters");
        Figure($"head name {what} ({name.Length} chars): INVALID_ARGUMENT for train/get/predict/activate/delete, e.g. \"{Shorten(train.Status.Detail)}\"; nothing outside the registry");
    }

    [Fact]
    public async Task An_empty_head_name_and_unknown_heads_get_invalid_argument_and_not_found()
    {
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var client = fixture.Client;
        var examples = fixture.Train.Take(5).Select(ReliabilityFixture.Measured).ToList();

        var empty = await Statuses.ExpectAsync(StatusCode.InvalidArgument,
            () => TrainExpectingFailureAsync(new HeadSpec { Name = "", Kind = HeadKind.Regressor }, examples), "train with an empty name");
        await Statuses.ExpectAsync(StatusCode.InvalidArgument,
            () => fixture.PredictAsync(fixture.TestImage(), ""), "predict an empty name");
        await Statuses.ExpectAsync(StatusCode.InvalidArgument,
            () => client.GetHeadAsync(new GetHeadRequest { Name = "" }, Stack.PredictHeaders, Deadline()).ResponseAsync, "get an empty name");
        var unknown = await Statuses.ExpectAsync(StatusCode.NotFound,
            () => fixture.PredictAsync(fixture.TestImage(), "no-such-head"), "predict an unknown head");
        await Statuses.ExpectAsync(StatusCode.NotFound,
            () => client.GetHeadAsync(new GetHeadRequest { Name = "no-such-head" }, Stack.PredictHeaders, Deadline()).ResponseAsync, "get an unknown head");
        await Statuses.ExpectAsync(StatusCode.NotFound,
            () => client.ActivateHeadAsync(new ActivateVersionRequest { Name = ReliabilityFixture.Classifier, Version = 9999 }, Stack.AdminHeaders, Deadline()).ResponseAsync, "activate an unknown version");
        await AssertNextRequestServedAsync("unknown heads");

        Assert.Contains(ReliabilityFixture.Classifier, unknown.Status.Detail, StringComparison.Ordinal);
        Figure($"empty head name: INVALID_ARGUMENT \"{empty.Status.Detail}\"; unknown head: NOT_FOUND \"{Shorten(unknown.Status.Detail)}\"");
    }

    [Fact]
    public async Task A_predict_naming_a_thousand_heads_is_refused_and_costs_no_head_loads()
    {
        await fixture.WaitUntilPredictSucceedsAsync(TimeSpan.FromSeconds(60));
        var before = Memory();
        var names = Enumerable.Range(0, 1000).Select(i => $"head-{i:D4}").ToArray();

        var e = await Statuses.ExpectAsync(StatusCode.InvalidArgument, () => fixture.PredictAsync(fixture.TestImage(), names), "1,000 heads");
        await AssertNextRequestServedAsync("1,000 heads");

        Assert.Contains("1000", e.Status.Detail, StringComparison.Ordinal);
        AssertBounded("1,000 heads", before, Memory());
        Figure($"Predict naming 1,000 heads: {e.StatusCode} \"{e.Status.Detail}\"");
    }

    // ---- helpers ----

    private static DateTime Deadline() => DateTime.UtcNow + ReliabilityFixture.CallDeadline;

    private async Task TrainExpectingFailureAsync(HeadSpec spec, IEnumerable<LabelledImage> examples)
    {
        var progress = await fixture.TrainAsync(spec, examples);
        Assert.Fail($"training '{spec.Name}' was expected to be refused but ended with {progress.LastOrDefault()?.Phase}");
    }

    private async Task AssertNextRequestServedAsync(string after)
    {
        var reply = await fixture.PredictAsync(fixture.TestImage(1), ReliabilityFixture.Classifier);
        Assert.True(reply.Results.Count == 1, $"the request after '{after}' was not served normally");
    }

    private async Task AssertHeadAbsentAsync(string name) =>
        await Statuses.ExpectAsync(StatusCode.NotFound,
            () => fixture.Client.GetHeadAsync(new GetHeadRequest { Name = name }, Stack.PredictHeaders, Deadline()).ResponseAsync, $"{name} was never created");

    private Dictionary<string, ProcessMemory> Memory() =>
        Stack.Processes.Where(p => p.IsRunning).ToDictionary(p => $"{p.Service}:{p.GrpcPort}", ProcessMemory.Of);

    private static void AssertBounded(string name, Dictionary<string, ProcessMemory> before, Dictionary<string, ProcessMemory> after)
    {
        foreach (var (process, b) in before)
        {
            if (after.TryGetValue(process, out var a))
            {
                Assert.True(a.PeakBytes - b.PeakBytes < PeakGrowthBound,
                    $"{name}: {process} peak memory grew {(a.PeakBytes - b.PeakBytes) >> 20} MiB ({b} -> {a})");
            }
        }
    }

    private static string Growth(Dictionary<string, ProcessMemory> before, Dictionary<string, ProcessMemory> after) =>
        "peak RSS growth " + string.Join(", ", before.Where(b => after.ContainsKey(b.Key))
            .Select(b => $"{b.Key.Split(':')[0]} +{(after[b.Key].PeakBytes - b.Value.PeakBytes) / 1048576.0:0.#} MiB"));

    private static string Shorten(string text) => text.Length > 160 ? text[..160] + "..." : text;

    private void Figure(string line)
    {
        FigureLog.Add(line);
        output.WriteLine(line);
    }
}
