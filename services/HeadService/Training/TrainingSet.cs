using Graft.Heads.Model;
using Graft.Heads.Tails;
using Graft.V1;

namespace Graft.Heads.Training;

/// <summary>All training rows in memory, row-major, so every epoch runs without touching the network again.
/// <see cref="Sources"/> and <see cref="Augmented"/> are null when no row set them.</summary>
public sealed record TrainingSet(int Rows, int Dimension, float[] Features, double[]? Values, int[]? Classes, IReadOnlyList<string> Labels)
{
    /// <summary>Per row: the image it comes from (0: its own). Rows of one source stay on one side of the split.</summary>
    public long[]? Sources { get; init; }

    /// <summary>Per row: an augmented view, used for training only.</summary>
    public bool[]? Augmented { get; init; }

    /// <summary>Units (sources) held out for validation under <paramref name="fraction"/>.</summary>
    public static int ValidationRows(int units, double fraction) => (int)Math.Floor(units * fraction);
}

/// <summary>Collects streamed rows, checking each as it arrives so a bad row is refused with its index before
/// training starts, and the whole set (size, classes, split) at the end.</summary>
/// <remarks>With a fine-tuning depth the rows hold flattened cut-point activations of the <paramref name="tail"/>'s input
/// shape (100-400 KB a row), so the dimension is known up front and the memory bound is checked with that in mind.</remarks>
public sealed class TrainingSetBuilder(TrainingSettings settings, HeadOptions options, ReceivedTail? tail = null)
{
    private const int MaxLabelLength = 256;
    private readonly List<float> _features = [];
    private readonly List<double> _values = [];
    private readonly List<int> _classes = [];
    private readonly List<long> _sources = [];
    private readonly List<bool> _augmented = [];
    private bool _anySource;
    private bool _anyAugmented;
    private readonly Dictionary<string, int> _labelIndex = new(StringComparer.Ordinal);
    private int _rows;
    private int _dimension;

    public int Rows => _rows;

    public void Add(FeatureRow row)
    {
        var index = _rows;
        if (row.Features.Count == 0)
        {
            throw HeadException.Invalid($"Row {index} has no features.");
        }
        if (tail is not null && row.Features.Count != tail.InputDimension)
        {
            throw HeadException.Invalid(
                $"Row {index} has {row.Features.Count} values but spec.depth {settings.Depth.Name()} takes the flattened {tail.CutPoint} activations, [{string.Join(", ", tail.InputShape)}] = {tail.InputDimension} values; " +
                "extract the rows at that cut point (ExtractRequest.cut_points) from the same backbone.");
        }
        if (_dimension == 0)
        {
            _dimension = row.Features.Count;
        }
        else if (row.Features.Count != _dimension)
        {
            throw HeadException.Invalid($"Row {index} has {row.Features.Count} features but row 0 has {_dimension}; every row must have the same dimension.");
        }
        if ((long)(_rows + 1) * _dimension > options.MaxTrainingValues)
        {
            throw new HeadException(HeadErrorKind.ResourceExhausted, tail is null
                ? $"Row {index} takes the training set past {options.MaxTrainingValues} feature values (Graft:Heads:MaxTrainingValues); send fewer rows."
                : $"Row {index} takes the training set past {options.MaxTrainingValues} values (Graft:Heads:MaxTrainingValues): {_rows + 1} rows x {_dimension} values of {tail.CutPoint} activations " +
                  $"(depth {settings.Depth.Name()}, {_dimension * 4L / 1024} KB a row). At most {options.MaxTrainingValues / _dimension} rows fit; train on fewer images (or fewer augmented views), " +
                  "or use a frozen depth (probe or mlp), whose rows are the final features.");
        }
        for (var i = 0; i < row.Features.Count; i++)
        {
            if (!float.IsFinite(row.Features[i]))
            {
                throw HeadException.Invalid($"Row {index}, feature {i} is {row.Features[i]}; features must be finite numbers.");
            }
        }
        if (settings.Kind == HeadKind.Regressor)
        {
            if (row.TargetCase != FeatureRow.TargetOneofCase.Value)
            {
                throw HeadException.Invalid($"Row {index} has no numeric target; a regressor needs `value` on every row.");
            }
            if (!double.IsFinite(row.Value))
            {
                throw HeadException.Invalid($"Row {index} has target {row.Value}; targets must be finite numbers.");
            }
            _values.Add(row.Value);
        }
        else
        {
            if (row.TargetCase != FeatureRow.TargetOneofCase.Label || string.IsNullOrWhiteSpace(row.Label))
            {
                throw HeadException.Invalid($"Row {index} has no label; a classifier needs a non-empty `label` on every row.");
            }
            if (row.Label.Length > MaxLabelLength)
            {
                throw HeadException.Invalid($"Row {index} has a label longer than {MaxLabelLength} characters.");
            }
            if (!_labelIndex.TryGetValue(row.Label, out var cls))
            {
                if (_labelIndex.Count >= options.MaxClasses)
                {
                    throw HeadException.Invalid($"Row {index} brings the class count past {options.MaxClasses} (Graft:Heads:MaxClasses).");
                }
                cls = _labelIndex.Count;
                _labelIndex[row.Label] = cls;
            }
            _classes.Add(cls);
        }
        _features.AddRange(row.Features);
        _sources.Add(row.Source);
        _augmented.Add(row.Augmented);
        _anySource |= row.Source != 0;
        _anyAugmented |= row.Augmented;
        _rows++;
    }

    /// <summary>Checks the whole set and returns it; labels come out sorted (ordinal) and classes renumbered to match.</summary>
    public TrainingSet Build()
    {
        var h = settings.Hyperparameters;
        if (_rows == 0)
        {
            throw HeadException.Invalid("The training set is empty: send at least one FeatureRows message with rows after the spec.");
        }
        var sources = _anySource ? _sources.ToArray() : null;
        var augmented = _anyAugmented ? _augmented.ToArray() : null;
        // The split's unit is a source image (see ValidationSplit); without sources every row is one.
        var (units, trainOnly) = ValidationSplit.CountUnits(_rows, sources, augmented);
        var validationUnits = TrainingSet.ValidationRows(units, h.ValidationFraction);
        if (h.ValidationFraction > 0 && (validationUnits < 1 || units - validationUnits + trainOnly < 1))
        {
            var needed = (int)Math.Ceiling(1 / h.ValidationFraction);
            throw HeadException.Invalid(sources is null && augmented is null
                ? $"{_rows} rows are too few for validation_fraction {h.ValidationFraction}: it needs at least {Math.Max(2, needed)} rows (one validation row and one training row); send more rows or set validation_fraction to 0."
                : $"{_rows} rows from {units} source images (rows sharing a `source` count once; augmented rows never validate) are too few for validation_fraction {h.ValidationFraction}: " +
                  $"it needs at least {Math.Max(2, needed)} source images with an original row; send more images or set validation_fraction to 0.");
        }
        var outputs = 1;
        int[]? classes = null;
        IReadOnlyList<string> labels = [];
        if (settings.Kind == HeadKind.Classifier)
        {
            if (_labelIndex.Count < 2)
            {
                throw HeadException.Invalid($"A classifier needs at least two classes; all {_rows} rows have label '{_labelIndex.Keys.First()}'.");
            }
            var sorted = _labelIndex.Keys.Order(StringComparer.Ordinal).ToArray();
            var remap = new int[sorted.Length];
            for (var i = 0; i < sorted.Length; i++)
            {
                remap[_labelIndex[sorted[i]]] = i;
            }
            classes = _classes.Select(c => remap[c]).ToArray();
            labels = sorted;
            outputs = sorted.Length;
        }
        // A fine-tuned head's layers sit on the tail's output, not on the cut activations.
        var headInputs = tail?.OutputDimension ?? _dimension;
        var parameters = HeadNetwork.ParameterCount(headInputs, h.HiddenSizes, outputs);
        if (parameters > options.MaxHeadParameters)
        {
            throw HeadException.Invalid(
                $"A head of {headInputs} inputs, hidden {string.Join('x', h.HiddenSizes)} and {outputs} outputs has {parameters} parameters; the limit is {options.MaxHeadParameters} (Graft:Heads:MaxHeadParameters).");
        }
        return new TrainingSet(_rows, _dimension, _features.ToArray(), settings.Kind == HeadKind.Regressor ? _values.ToArray() : null, classes, labels)
        {
            Sources = sources,
            Augmented = augmented,
        };
    }
}
