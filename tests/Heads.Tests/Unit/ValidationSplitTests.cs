using Graft.Heads.Training;

namespace Graft.Heads.Tests.Unit;

public sealed class ValidationSplitTests
{
    private static TrainingSet Set(long[] sources, bool[] augmented, int[] classes)
        => new(sources.Length, 1, new float[sources.Length], null, classes, ["a", "b"]) { Sources = sources, Augmented = augmented };

    [Fact]
    public void Rows_of_one_source_stay_together_and_augmented_rows_never_validate()
    {
        // 20 images of two classes, each with its original row and two augmented views.
        var sources = Enumerable.Range(1, 20).SelectMany(s => new long[] { s, s, s }).ToArray();
        var augmented = Enumerable.Range(0, 60).Select(i => i % 3 != 0).ToArray();
        var classes = sources.Select(s => (int)(s % 2)).ToArray();

        var (validation, train) = ValidationSplit.Split(Set(sources, augmented, classes), 0.2, 42, stratify: true);

        Assert.Equal(4, validation.Length); // 20 % of the 20 images, one original row each
        Assert.All(validation, row => Assert.False(augmented[row]));
        var validationSources = validation.Select(r => sources[r]).ToHashSet();
        Assert.DoesNotContain(train, row => validationSources.Contains(sources[row]));
        Assert.Equal(16 * 3, train.Length); // the validation images' views are dropped, not trained on
        Assert.Equal(2, validation.Count(r => classes[r] == 0)); // stratified by the image's class
    }

    [Fact]
    public void A_source_with_only_augmented_rows_trains_and_source_zero_rows_are_their_own_images()
    {
        long[] sources = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7];
        bool[] augmented = [false, false, false, false, false, false, false, false, false, false, true, true];
        var classes = sources.Select((_, i) => i % 2).ToArray();

        var (validation, train) = ValidationSplit.Split(Set(sources, augmented, classes), 0.2, 1, stratify: true);

        Assert.Equal(2, validation.Length);
        Assert.Contains(10, train);
        Assert.Contains(11, train);
        Assert.Equal(12, validation.Length + train.Length);
        Assert.Equal((10, 1), ValidationSplit.CountUnits(12, sources, augmented));
    }

    [Fact]
    public void Without_sources_the_split_is_seeded_and_covers_every_row_once()
    {
        var data = new TrainingSet(50, 1, new float[50], null, Enumerable.Range(0, 50).Select(i => i % 2).ToArray(), ["a", "b"]);

        var one = ValidationSplit.Split(data, 0.2, 5, stratify: true);
        var two = ValidationSplit.Split(data, 0.2, 5, stratify: true);

        Assert.Equal(one.Validation, two.Validation);
        Assert.Equal(10, one.Validation.Length);
        Assert.Equal(Enumerable.Range(0, 50), one.Validation.Concat(one.Train).Order());
    }
}
