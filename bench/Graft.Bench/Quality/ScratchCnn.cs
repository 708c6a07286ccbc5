using System.Diagnostics;
using Graft.Bench.Data;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Graft.Bench.Quality;

/// <summary>
/// The no-transfer baseline: a small CNN trained from scratch with TorchSharp on the same 28×28 images
/// (Conv 32 → pool → Conv 64 → pool → FC 128 → dropout → FC 10, Adam, cross-entropy).
/// </summary>
public static class ScratchCnn
{
    public sealed record Result(int TrainImages, int Epochs, double Accuracy, double TrainSeconds);

    private sealed class Net : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> _features;
        private readonly Module<Tensor, Tensor> _classifier;

        public Net(int classes) : base(nameof(ScratchCnn))
        {
            _features = Sequential(
                Conv2d(1, 32, 3, padding: 1), ReLU(), MaxPool2d(2),
                Conv2d(32, 64, 3, padding: 1), ReLU(), MaxPool2d(2),
                Flatten());
            _classifier = Sequential(Linear(64 * 7 * 7, 128), ReLU(), Dropout(0.3), Linear(128, classes));
            RegisterComponents();
        }

        public override Tensor forward(Tensor input) => _classifier.forward(_features.forward(input));
    }

    /// <summary>Trains on <paramref name="train"/> and returns test accuracy and wall time of the training alone.</summary>
    public static Result TrainAndTest(IReadOnlyList<FashionImage> train, IReadOnlyList<FashionImage> test, int seed = 42)
    {
        const int batch = 32;
        // At least 300 optimiser steps, at least 20 epochs: a tiny set gets enough updates to converge.
        var batchesPerEpoch = (train.Count + batch - 1) / batch;
        var epochs = Math.Max(20, (300 + batchesPerEpoch - 1) / batchesPerEpoch);
        // The same thread budget HeadService trains with (cores − 1, at least 1), so the training times compare.
        torch.set_num_threads(Math.Max(1, Environment.ProcessorCount - 1));
        torch.manual_seed(seed);
        using var net = new Net(FashionMnist.Classes.Length);
        using var optimizer = new Graft.Heads.Training.ScalarSafeAdam(net.parameters(), 1e-3, weightDecay: 0); // optim.Adam can die mid-run: see ScalarSafeAdam
        using var lossFn = CrossEntropyLoss();
        using var x = ToTensor(train);
        using var y = tensor(train.Select(i => (long)i.Label).ToArray());
        var generator = new torch.Generator((ulong)seed);

        var timer = Stopwatch.StartNew();
        net.train();
        for (var epoch = 0; epoch < epochs; epoch++)
        {
            using var order = randperm(train.Count, generator: generator);
            for (var start = 0; start < train.Count; start += batch)
            {
                using var scope = NewDisposeScope();
                var idx = order.narrow(0, start, Math.Min(batch, train.Count - start));
                optimizer.zero_grad();
                var loss = lossFn.forward(net.forward(x.index_select(0, idx)), y.index_select(0, idx));
                loss.backward();
                optimizer.step();
            }
        }
        timer.Stop();

        net.eval();
        long correct = 0;
        using (no_grad())
        {
            for (var start = 0; start < test.Count; start += 256)
            {
                using var scope = NewDisposeScope();
                var part = test.Skip(start).Take(256).ToList();
                var predicted = net.forward(ToTensor(part)).argmax(1);
                var truth = tensor(part.Select(i => (long)i.Label).ToArray());
                correct += predicted.eq(truth).sum().item<long>();
            }
        }
        return new Result(train.Count, epochs, (double)correct / test.Count, timer.Elapsed.TotalSeconds);
    }

    private static Tensor ToTensor(IReadOnlyList<FashionImage> images)
    {
        var side = FashionMnist.Side;
        var data = new float[images.Count * side * side];
        for (var i = 0; i < images.Count; i++)
            for (var p = 0; p < side * side; p++) data[i * side * side + p] = images[i].Pixels[p] / 255f;
        return tensor(data, [images.Count, 1, side, side]);
    }
}
