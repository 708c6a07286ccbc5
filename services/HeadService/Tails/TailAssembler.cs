using Graft.Heads.Training;
using Graft.V1;

namespace Graft.Heads.Tails;

/// <summary>A backbone tail received with a fine-tuning Train call: its ONNX bytes, the trainable module converted
/// from them, and the shapes around it. Owns (and disposes) the module.</summary>
public sealed class ReceivedTail(byte[] onnx, OnnxTail module, string cutPoint) : IDisposable
{
    public byte[] Onnx { get; } = onnx;

    public OnnxTail Module { get; } = module;

    public string CutPoint { get; } = cutPoint;

    /// <summary>The cut activation shape without the batch dimension.</summary>
    public long[] InputShape => Module.InputShape;

    /// <summary>Values per training row: the product of <see cref="InputShape"/>.</summary>
    public long InputDimension => InputShape.Aggregate(1L, (a, d) => a * d);

    /// <summary>Values the tail hands to the head layers (the backbone's final feature dimension).</summary>
    public int OutputDimension { get; } = module.OutputDimension();

    public void Dispose() => Module.Dispose();
}

/// <summary>Collects the <see cref="TailGraphChunk"/> pieces of a fine-tuning Train call (after the spec, before any
/// row), checking each against the spec as it arrives, and converts the whole graph once the rows start.</summary>
public sealed class TailAssembler(TrainingSettings settings, HeadOptions options)
{
    private byte[]? _buffer;
    private int _received;
    private long[] _shape = [];

    public bool Started => _buffer is not null;

    public void Add(TailGraphChunk chunk)
    {
        var depth = settings.Depth;
        if (!depth.FineTunes())
        {
            throw HeadException.Invalid(
                $"A tail piece arrived but spec.depth is {depth.Name()}, which trains on the final features; send tail pieces only with last-block or last-stage.");
        }
        if (!string.Equals(chunk.Fingerprint, settings.BackboneFingerprint, StringComparison.Ordinal))
        {
            throw HeadException.Invalid(
                $"tail.fingerprint is '{chunk.Fingerprint}' but spec.backbone_fingerprint is '{settings.BackboneFingerprint}'; the tail and the rows must come from the same backbone.");
        }
        if (!string.Equals(chunk.CutPoint, settings.CutPoint, StringComparison.Ordinal))
        {
            throw HeadException.Invalid(
                $"tail.cut_point is '{chunk.CutPoint}' but spec.depth {depth.Name()} fine-tunes from cut point '{settings.CutPoint}'; fetch that one with Backbone.GetTail.");
        }
        if (chunk.TotalBytes <= 0 || chunk.TotalBytes > options.MaxTailBytes)
        {
            throw HeadException.Invalid(
                $"tail.total_bytes is {chunk.TotalBytes}; it must be in [1, {options.MaxTailBytes}] (Graft:Heads:MaxTailBytes).");
        }
        if (_buffer is null)
        {
            _buffer = new byte[chunk.TotalBytes];
            _shape = [.. chunk.InputShape];
        }
        else if (chunk.TotalBytes != _buffer.Length)
        {
            throw HeadException.Invalid(
                $"tail.total_bytes changed from {_buffer.Length} to {chunk.TotalBytes} between pieces; send the pieces of one GetTail stream, in order.");
        }
        if (chunk.OnnxChunk.Length > _buffer.Length - _received)
        {
            throw HeadException.Invalid(
                $"The tail pieces hold more than tail.total_bytes ({_buffer.Length}) bytes; send the pieces of one GetTail stream once, in order.");
        }
        chunk.OnnxChunk.Span.CopyTo(_buffer.AsSpan(_received));
        _received += chunk.OnnxChunk.Length;
    }

    /// <summary>The converted tail. FAILED_PRECONDITION when no tail came (the Gateway sends it; direct callers get
    /// it from Backbone.GetTail) or when it uses an op the converter lacks; INVALID_ARGUMENT when it is incomplete.</summary>
    public ReceivedTail Complete()
    {
        if (_buffer is null)
        {
            throw new HeadException(HeadErrorKind.FailedPrecondition,
                $"spec.depth {settings.Depth.Name()} fine-tunes the backbone from cut point '{settings.CutPoint}', so the backbone's tail must come right after the spec and before any row " +
                $"(`tail` messages: the Gateway sends them; a direct caller streams them from Backbone.GetTail(cut_point: \"{settings.CutPoint}\")).");
        }
        if (_received != _buffer.Length)
        {
            throw HeadException.Invalid(
                $"The tail pieces hold {_received} of tail.total_bytes {_buffer.Length} bytes; send every piece of the GetTail stream before the rows.");
        }
        OnnxTail module;
        try
        {
            module = OnnxTail.FromOnnx(_buffer);
        }
        catch (TailConversionException e)
        {
            throw new HeadException(HeadErrorKind.FailedPrecondition, $"The {settings.CutPoint} tail cannot be fine-tuned: {e.Message}");
        }
        if (_shape.Length > 0 && !_shape.SequenceEqual(module.InputShape))
        {
            module.Dispose();
            throw HeadException.Invalid(
                $"tail.input_shape is [{string.Join(", ", _shape)}] but the tail graph's input is [{string.Join(", ", module.InputShape)}].");
        }
        if (module.InputShape.Length == 0 || module.InputShape.Any(d => d <= 0))
        {
            module.Dispose();
            throw new HeadException(HeadErrorKind.FailedPrecondition,
                $"The {settings.CutPoint} tail graph's input has no fixed shape ([{string.Join(", ", module.InputShape)}]); fetch it from Backbone.GetTail.");
        }
        return new ReceivedTail(_buffer, module, settings.CutPoint);
    }
}
