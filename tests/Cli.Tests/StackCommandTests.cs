using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Graft.Cli.Tests;

/// <summary>The CLI against a real stack started by <c>graft up</c>: ResNet18 through ONNX Runtime, TorchSharp heads, gRPC over sockets.</summary>
[Collection(StackCollection.Name)]
public sealed class StackCommandTests(StackFixture stack)
{
    [Fact]
    public async Task Train_on_class_folders_publishes_a_classifier_version_and_prints_its_validation_metrics()
    {
        var run = await stack.ClassifierTraining;

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Matches(new Regex($@"Published {StackFixture.ClassifierHead} v\d+"), run.Stdout);
        Assert.Contains("validation accuracy", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("baseline accuracy", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("24 images in 3 classes", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Train_on_a_csv_of_path_and_target_publishes_a_regressor_with_its_mae()
    {
        var lines = File.ReadLines(Path.Combine(GraftCli.Samples, "train", "lengths.csv")).Skip(1).Take(16)
            .Select(l => Path.Combine(GraftCli.Samples, "train", l.Split(',')[0]) + "," + l.Split(',')[1]);
        var csv = Path.Combine(stack.WorkingDirectory, "lengths.csv");
        await File.WriteAllLinesAsync(csv, ["path,target", .. lines]);

        var run = await stack.Graft("train", "cli-length", "--data", csv, "--epochs", "5", "--hidden", "32");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("(regressor)", run.Stdout, StringComparison.Ordinal);
        Assert.Matches(new Regex(@"Published cli-length v\d+"), run.Stdout);
        Assert.Contains("validation MAE", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Predict_with_json_answers_every_image_with_a_label_the_head_was_trained_on()
    {
        Assert.Equal(0, (await stack.ClassifierTraining).ExitCode);
        var trousers = Path.Combine(GraftCli.Samples, "test", "trouser");
        var sneaker = Directory.GetFiles(Path.Combine(GraftCli.Samples, "test", "sneaker"), "*.png").Order(StringComparer.Ordinal).First();

        var run = await stack.Graft("predict", trousers, sneaker, "--head", StackFixture.ClassifierHead, "--json");

        Assert.True(run.ExitCode == 0, run.ToString());
        var items = JsonNode.Parse(run.Stdout)!.AsArray();
        Assert.Equal(Directory.GetFiles(trousers, "*.png").Length + 1, items.Count);
        var labels = new List<string>();
        foreach (var item in items)
        {
            var result = Assert.Single(item!["reply"]!["results"]!.AsArray())!;
            Assert.Equal(StackFixture.ClassifierHead, (string?)result["head"]);
            var top = result["top"]!.AsArray()[0]!;
            Assert.Contains((string)top["label"]!, new[] { "trouser", "sneaker", "bag" });
            Assert.InRange((double)top["probability"]!, 0.0, 1.0);
            labels.Add((string)top["label"]!);
        }
        // Trousers look nothing like sneakers or bags: a head that learned anything gets most of them right.
        Assert.True(labels.Take(items.Count - 1).Count(l => l == "trouser") >= 6, string.Join(", ", labels));
    }

    [Fact]
    public async Task Heads_list_shows_the_trained_head_with_its_active_version()
    {
        var training = await stack.ClassifierTraining;
        Assert.Equal(0, training.ExitCode);
        var version = Regex.Match(training.Stdout, $@"Published {StackFixture.ClassifierHead} v(\d+)").Groups[1].Value;

        var run = await stack.Graft("heads", "list");

        Assert.True(run.ExitCode == 0, run.ToString());
        var row = run.Stdout.Split('\n').Single(l => l.Contains(StackFixture.ClassifierHead, StringComparison.Ordinal));
        Assert.Contains("classifier", row, StringComparison.Ordinal);
        Assert.Contains($"v{int.Parse(version, CultureInfo.InvariantCulture)}", row, StringComparison.Ordinal);
        Assert.Contains("ready", row, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_admin_call_without_a_token_is_refused_with_advice_and_exit_code_4()
    {
        // A folder without data/admin-token: the CLI has no token to send.
        var elsewhere = Directory.CreateTempSubdirectory("graft-cli-no-token-").FullName;
        try
        {
            var run = await GraftCli.RunAsync(elsewhere, "--gateway", stack.Gateway, "heads", "delete", StackFixture.ClassifierHead + "-missing");

            Assert.True(run.ExitCode == 4, run.ToString());
            Assert.Contains("--token", run.Stderr, StringComparison.Ordinal);
            Assert.Contains("GRAFT_ADMIN_TOKEN", run.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(elsewhere, recursive: true);
        }
    }
}
