using Graft.Heads.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Graft.Heads.Tests.Unit;

public sealed class ScalarSafeAdamTests
{
    private static (nn.Module<Tensor, Tensor> Net, Tensor X, Tensor Y) Problem()
    {
        manual_seed(11);
        var net = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4));
        var x = randn(64, 32);
        var y = randint(0, 4, [64]);
        return (net, x, y);
    }

    private static float[] Weights(nn.Module<Tensor, Tensor> net) =>
        net.parameters().SelectMany(p => p.detach().data<float>().ToArray()).ToArray();

    [Fact]
    public void It_trains_the_same_weights_as_torchsharps_adam_with_weight_decay()
    {
        var (reference, x, y) = Problem();
        var (ours, _, _) = Problem();
        using var theirs = optim.Adam(reference.parameters(), lr: 3e-3, weight_decay: 1e-3);
        using var mine = new ScalarSafeAdam(ours.parameters(), 3e-3, 1e-3);

        for (var step = 0; step < 25; step++)
        {
            theirs.zero_grad();
            nn.functional.cross_entropy(reference.call(x), y).backward();
            theirs.step();
            mine.zero_grad();
            nn.functional.cross_entropy(ours.call(x), y).backward();
            mine.step();
        }

        Assert.Equal(Weights(reference), Weights(ours)); // bit for bit: the same arithmetic in the same order
        Assert.NotEqual(Weights(Problem().Net), Weights(ours)); // and it did train
    }

    [Fact]
    public async Task Its_steps_survive_garbage_collections_that_run_during_the_native_calls()
    {
        // Another thread forcing collections and finalizers all the time: a Scalar whose only reference is gone while
        // libtorch still reads it would be freed under it (optim.Adam died of this in a 20-minute benchmark run).
        var (net, x, y) = Problem();
        using var optimizer = new ScalarSafeAdam(net.parameters(), 1e-3, 1e-4);
        using var stop = new CancellationTokenSource();
        var collections = 0;
        var hammer = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                collections++;
            }
        });

        var losses = new List<float>();
        for (var step = 0; step < 2000; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(net.call(x), y);
            loss.backward();
            optimizer.step();
            losses.Add(loss.item<float>());
        }
        await stop.CancelAsync();
        await hammer;

        Assert.True(collections > 100, $"only {collections} collections ran alongside the steps");
        Assert.All(losses, l => Assert.True(float.IsFinite(l)));
        Assert.True(losses[^1] < losses[0] / 2, $"loss {losses[0]} -> {losses[^1]}");
    }
}
