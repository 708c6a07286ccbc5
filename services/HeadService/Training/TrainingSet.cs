using Graft.Heads.Model;
using Graft.V1;

namespace Graft.Heads.Training;

/// <summary>All training rows in memory, row-major, so every epoch runs without touching the network again.</summary>
public sealed record TrainingSet(int Rows, int Dimension, float[] Features, double[]? Values, int[]? Classes, IReadOnlyList<string> Labels)
{
    /// <summary>Rows held out for validation under <paramref name="fraction"/>.</summary>
    public static int ValidationRows(int rows, double fraction) => (int)Math.Floor(rows * fraction);
}

/// <summary>Collects streamed rows, checking each as it arrives so a bad row is refused with its index before
/// training starts, and the whole set (size, classes, split) at the end.</summary>
public sealed class TrainingSetBuilder(TrainingSettings settings, HeadOptions options)
{
    private const int MaxLabelLength = 256;
    private readonly List<float> _features = [];
    private readonly List<double> _values = [];
    private readonly List<int> _classes = [];
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
            throw new HeadException(HeadErrorKind.ResourceExhausted,
                $"Row {index} takes the training set past {options.MaxTrainingValues} feature values (Graft:Heads:MaxTrainingValues); send fewer rows.");
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
        var validationRows = TrainingSet.ValidationRows(_rows, h.ValidationFraction);
        if (h.ValidationFraction > 0 && (validationRows < 1 || _rows - validationRows < 1))
        {
            var needed = (int)Math.Ceiling(1 / h.ValidationFraction);
            throw HeadException.Invalid(
                $"{_rows} rows are too few for validation_fraction {h.ValidationFraction}: it needs at least {Math.Max(2, needed)} rows (one validation row and one training row); send more rows or set validation_fraction to 0.");
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
        var parameters = HeadNetwork.ParameterCount(_dimension, h.HiddenSizes, outputs);
        if (parameters > options.MaxHeadParameters)
        {
            throw HeadException.Invalid(
                $"A head of {_dimension} inputs, hidden {string.Join('x', h.HiddenSizes)} and {outputs} outputs has {parameters} parameters; the limit is {options.MaxHeadParameters} (Graft:Heads:MaxHeadParameters).");
        }
        return new TrainingSet(_rows, _dimension, _features.ToArray(), settings.Kind == HeadKind.Regressor ? _values.ToArray() : null, classes, labels);
    }
}
