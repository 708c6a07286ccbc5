using Google.Protobuf;
using Graft.Backbone.Tests.Infrastructure;
using Graft.Testing;
using Graft.V1;
using Grpc.Core;
using SkiaSharp;

namespace Graft.Backbone.Tests;

/// <summary>Every refusal has its precise status and an actionable message, and the service keeps serving after it.</summary>
[Collection(BackboneCollection.Name)]
public sealed class BadInputTests(DefaultBackbone backbone)
{
    public static TheoryData<string, StatusCode, string> Cases => new()
    {
        { "no input", StatusCode.InvalidArgument, "no input" },
        { "empty image", StatusCode.InvalidArgument, "empty" },
        { "not an image", StatusCode.InvalidArgument, "not a recognised image" },
        { "truncated png", StatusCode.InvalidArgument, "truncated" },
        { "40 MP exceeded in header", StatusCode.ResourceExhausted, "over the limit of 40000000" },
        { "message over 16 MiB", StatusCode.ResourceExhausted, "exceeds the maximum" },
        { "tensor of wrong shape", StatusCode.InvalidArgument, "send shape [3, 224, 224]" },
        { "tensor with too few values", StatusCode.InvalidArgument, "needs 150528" },
        { "tensor with NaN", StatusCode.InvalidArgument, "NaN" },
        { "tensor with infinity", StatusCode.InvalidArgument, "finite" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task A_bad_input_gets_its_status_and_message_and_the_next_good_request_succeeds(string @case, StatusCode status, string message)
    {
        var request = Build(@case);

        var e = await Assert.ThrowsAsync<RpcException>(async () => await backbone.Client.ExtractAsync(request));
        var good = await backbone.Client.ExtractAsync(new ExtractRequest { Tensor = ValidTensor() });

        Assert.Equal(status, e.StatusCode);
        Assert.Contains(message, e.Status.Detail);
        Assert.Equal(512, good.Dimension);
    }

    [Fact]
    public async Task A_bad_item_in_a_stream_gets_an_item_error_and_the_other_items_their_features_in_order()
    {
        var image = ByteString.CopyFrom(File.ReadAllBytes(SampleImages.Load("test")[11].Path));
        using var call = backbone.Client.ExtractStream();

        await call.RequestStream.WriteAsync(new ExtractStreamRequest { Id = "a", Request = new ExtractRequest { Image = image } });
        await call.RequestStream.WriteAsync(new ExtractStreamRequest { Id = "b", Request = new ExtractRequest { Image = ByteString.CopyFromUtf8("not an image") } });
        await call.RequestStream.WriteAsync(new ExtractStreamRequest { Id = "c", Request = new ExtractRequest { Tensor = ValidTensor() } });
        await call.RequestStream.CompleteAsync();
        var replies = await call.ResponseStream.ReadAllAsync().ToListAsync();

        Assert.Equal(["a", "b", "c"], replies.Select(r => r.Id));
        Assert.Equal(512, replies[0].Reply.Dimension);
        Assert.Equal((int)StatusCode.InvalidArgument, replies[1].ErrorCode);
        Assert.Contains("JPEG, PNG, WebP, GIF (first frame) or BMP", replies[1].ErrorMessage);
        Assert.Null(replies[1].Reply);
        Assert.Equal(512, replies[2].Reply.Dimension);
    }

    private static ExtractRequest Build(string @case) => @case switch
    {
        "no input" => new ExtractRequest(),
        "empty image" => new ExtractRequest { Image = ByteString.Empty },
        "not an image" => new ExtractRequest { Image = ByteString.CopyFromUtf8("GIF? no, just text") },
        "truncated png" => new ExtractRequest { Image = ByteString.CopyFrom(TruncatedPng()) },
        "40 MP exceeded in header" => new ExtractRequest { Image = ByteString.CopyFrom(Images.PngHeaderOnly(8000, 6000)) },
        "message over 16 MiB" => new ExtractRequest { Image = ByteString.CopyFrom(new byte[17 * 1024 * 1024]) },
        "tensor of wrong shape" => new ExtractRequest { Tensor = Tensor([1, 224, 224], 224 * 224) },
        "tensor with too few values" => new ExtractRequest { Tensor = Tensor([3, 224, 224], 100) },
        "tensor with NaN" => new ExtractRequest { Tensor = WithValue(float.NaN) },
        "tensor with infinity" => new ExtractRequest { Tensor = WithValue(float.PositiveInfinity) },
        _ => throw new ArgumentOutOfRangeException(nameof(@case)),
    };

    private static V1.Tensor ValidTensor() => Tensor([3, 224, 224], 3 * 224 * 224, seed: Random.Shared.Next());

    private static V1.Tensor WithValue(float value)
    {
        var tensor = ValidTensor();
        tensor.Data[4242] = value;
        return tensor;
    }

    private static V1.Tensor Tensor(long[] shape, int count, int seed = 1)
    {
        var random = new Random(seed);
        var tensor = new V1.Tensor();
        tensor.Shape.AddRange(shape);
        tensor.Data.AddRange(Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 200) - 100)));
        return tensor;
    }

    private static byte[] TruncatedPng()
    {
        using var bitmap = Images.Solid(64, 64, SKColors.Teal);
        using (var canvas = new SKCanvas(bitmap)) canvas.DrawCircle(32, 32, 20, new SKPaint { Color = SKColors.Orange });
        var png = Images.Encode(bitmap);
        return png[..(png.Length / 2)];
    }
}
