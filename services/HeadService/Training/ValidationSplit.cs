namespace Graft.Heads.Training;

/// <summary>
/// The seeded train/validation split. The unit of the split is a source image: rows sharing a non-zero
/// <c>FeatureRow.source</c> (an image and its augmented views) land on one side together, so validation never scores
/// a view of an image the head trained on. Augmented rows are training-only: a validation source keeps only its
/// original rows (its views are dropped), and a source with nothing but augmented rows trains. For a classifier the
/// split is stratified by the class of each source. Without sources and augmented rows every row is its own unit, and
/// the split is the one HeadService always made.
/// </summary>
public static class ValidationSplit
{
    /// <summary>Sources that can give validation rows (those with at least one original, non-augmented row), and
    /// sources that only train (nothing but augmented rows).</summary>
    public static (int Eligible, int TrainOnly) CountUnits(int rows, long[]? sources, bool[]? augmented)
    {
        var (eligible, trainOnly) = Units(rows, sources, augmented);
        return (eligible.Count, trainOnly.Count);
    }

    public static (int[] Validation, int[] Train) Split(TrainingSet data, double fraction, long seed, bool stratify)
    {
        var (eligible, trainOnly) = Units(data.Rows, data.Sources, data.Augmented);
        var augmented = data.Augmented;
        bool Original(int row) => augmented is null || !augmented[row];

        var order = Enumerable.Range(0, eligible.Count).ToArray();
        new Random(unchecked((int)seed ^ (int)(seed >> 32))).Shuffle(order);
        if (stratify && data.Classes is { } classes)
        {
            // Stratified: reorder so that every prefix holds each class in proportion, and the validation rows (the
            // prefix) mirror the class mix. A plain random split of balanced data leaves the training-majority class
            // short in validation, which makes the majority-class baseline meaningless.
            int ClassOf(int unit) => classes[eligible[unit].First(Original)];
            var perClass = order.GroupBy(ClassOf).ToDictionary(g => g.Key, g => g.Count());
            var seen = new Dictionary<int, int>();
            var position = new double[eligible.Count];
            foreach (var unit in order)
            {
                var c = ClassOf(unit);
                var k = seen[c] = seen.GetValueOrDefault(c) + 1;
                position[unit] = (k - 0.5) / perClass[c];
            }
            order = order.OrderBy(unit => position[unit]).ToArray(); // stable: ties keep the seeded shuffle
        }
        var validationUnits = TrainingSet.ValidationRows(eligible.Count, fraction);
        var validation = order[..validationUnits].SelectMany(u => eligible[u].Where(Original)).ToArray();
        var train = order[validationUnits..].SelectMany(u => eligible[u]).Concat(trainOnly.SelectMany(u => u)).ToArray();
        return (validation, train);
    }

    private static (List<int[]> Eligible, List<int[]> TrainOnly) Units(int rows, long[]? sources, bool[]? augmented)
    {
        var units = new List<List<int>>();
        var bySource = new Dictionary<long, List<int>>();
        for (var row = 0; row < rows; row++)
        {
            var source = sources?[row] ?? 0;
            if (source == 0)
            {
                units.Add([row]);
            }
            else if (bySource.TryGetValue(source, out var unit))
            {
                unit.Add(row);
            }
            else
            {
                bySource[source] = unit = [row];
                units.Add(unit);
            }
        }
        var eligible = new List<int[]>();
        var trainOnly = new List<int[]>();
        foreach (var unit in units)
        {
            (augmented is not null && unit.All(r => augmented[r]) ? trainOnly : eligible).Add([.. unit]);
        }
        return (eligible, trainOnly);
    }
}
