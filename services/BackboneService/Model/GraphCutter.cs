using Onnx;

namespace Graft.Backbone.Model;

/// <summary>The outcome of cutting a model: the feature tensor and what was removed.</summary>
/// <param name="CutTensor">Name of the tensor now exposed as the only graph output.</param>
/// <param name="RemovedNodes">Nodes pruned because they only served the classifier.</param>
/// <param name="RemovedParameters">Weights (element count) dropped with them; never handed to ONNX Runtime.</param>
/// <param name="KeptParameters">Weights (element count) that remain.</param>
public sealed record GraphCut(string CutTensor, int RemovedNodes, long RemovedParameters, long KeptParameters);

/// <summary>Cuts the classifier off an ONNX CNN at load: exposes the tensor that feeds the first fully-connected layer
/// (or a named tensor) as the only output, prunes every node and initializer not needed for it, and makes the batch
/// dimension symbolic so one run can take a batch.</summary>
public static class GraphCutter
{
    /// <summary>Symbolic name given to the batch dimension.</summary>
    public const string BatchDimension = "N";

    private static readonly HashSet<string> FullyConnected = ["Gemm", "MatMul"];

    // Shape-only ops between pool5 and the first fully-connected layer; the cut goes before them so the
    // features keep their spatial layout (C×7×7 for VGG) and the caller flattens.
    private static readonly HashSet<string> ShapeOnly = ["Flatten", "Reshape", "Identity", "Squeeze"];

    /// <summary>Cuts <paramref name="model"/> in place and returns what was done.</summary>
    /// <param name="model">A parsed ONNX model; modified.</param>
    /// <param name="cutTensor">A tensor to cut at, or null to find the input of the first fully-connected layer.</param>
    /// <exception cref="InvalidOperationException">The cut point cannot be found or does not exist.</exception>
    public static GraphCut Cut(ModelProto model, string? cutTensor = null)
    {
        var graph = model.Graph;
        var producers = new Dictionary<string, NodeProto>();
        foreach (var node in graph.Node)
        {
            foreach (var output in node.Output) producers[output] = node;
        }
        var initializers = graph.Initializer.ToDictionary(t => t.Name);

        var cut = string.IsNullOrEmpty(cutTensor) ? FindFeatureTensor(graph, producers, initializers) : cutTensor;
        if (!producers.ContainsKey(cut) && !graph.Input.Any(i => i.Name == cut))
        {
            throw new InvalidOperationException($"Cut tensor '{cut}' is not produced by any node of the graph; name an existing tensor in the profile's CutTensor.");
        }

        // Keep exactly the nodes the cut tensor depends on (nodes are topologically sorted, so walk backwards).
        var needed = new HashSet<string> { cut };
        var kept = new List<NodeProto>();
        for (var i = graph.Node.Count - 1; i >= 0; i--)
        {
            var node = graph.Node[i];
            if (!node.Output.Any(needed.Contains)) continue;
            kept.Add(node);
            foreach (var input in node.Input) if (input.Length > 0) needed.Add(input);
        }
        kept.Reverse();
        var removedNodes = graph.Node.Count - kept.Count;
        graph.Node.Clear();
        graph.Node.AddRange(kept);

        long removedParameters = 0, keptParameters = 0;
        var keptInitializers = new List<TensorProto>();
        foreach (var tensor in graph.Initializer)
        {
            var count = tensor.Dims.Aggregate(1L, (a, d) => a * d);
            if (needed.Contains(tensor.Name)) { keptInitializers.Add(tensor); keptParameters += count; }
            else removedParameters += count;
        }
        graph.Initializer.Clear();
        graph.Initializer.AddRange(keptInitializers);

        var keptInputs = graph.Input.Where(i => needed.Contains(i.Name)).ToList();
        graph.Input.Clear();
        graph.Input.AddRange(keptInputs);

        // The output's shape is left for ONNX Runtime to infer; intermediate shapes recorded at batch 1 are dropped.
        graph.Output.Clear();
        graph.Output.Add(new ValueInfoProto
        {
            Name = cut,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
        });
        graph.ValueInfo.Clear();
        MakeBatchSymbolic(graph, initializers.Keys.ToHashSet());
        return new GraphCut(cut, removedNodes, removedParameters, keptParameters);
    }

    /// <summary>Adds <paramref name="tensors"/> as extra graph outputs, so one run can read them beside the cut.</summary>
    public static void ExposeOutputs(ModelProto model, IEnumerable<string> tensors)
    {
        foreach (var tensor in tensors.Distinct().Where(t => model.Graph.Output.All(o => o.Name != t)))
        {
            model.Graph.Output.Add(new ValueInfoProto
            {
                Name = tensor,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float } },
            });
        }
    }

    /// <summary>Finds the tensor feeding the first fully-connected layer, stepping back over Flatten/Reshape.</summary>
    private static string FindFeatureTensor(GraphProto graph, Dictionary<string, NodeProto> producers, Dictionary<string, TensorProto> initializers)
    {
        var fc = graph.Node.FirstOrDefault(n => FullyConnected.Contains(n.OpType));
        if (fc is null)
        {
            if (graph.Output.Count == 1) return graph.Output[0].Name;
            throw new InvalidOperationException(
                "The model has no fully-connected layer (Gemm/MatMul) and more than one output, so the cut point is ambiguous; name it in the profile's CutTensor.");
        }
        // The data operand is the one not held in an initializer (the weights are).
        var tensor = fc.Input.Take(2).FirstOrDefault(i => !initializers.ContainsKey(i))
            ?? throw new InvalidOperationException($"The first fully-connected node '{fc.Name}' has no data input; name the cut in the profile's CutTensor.");
        while (producers.TryGetValue(tensor, out var producer) && ShapeOnly.Contains(producer.OpType))
        {
            tensor = producer.Input[0];
        }
        return tensor;
    }

    /// <summary>Replaces the leading dimension of every graph input (not initializers) by <see cref="BatchDimension"/>.</summary>
    private static void MakeBatchSymbolic(GraphProto graph, HashSet<string> initializerNames)
    {
        foreach (var input in graph.Input.Where(i => !initializerNames.Contains(i.Name)))
        {
            var shape = input.Type?.TensorType?.Shape;
            if (shape is null || shape.Dim.Count == 0) continue;
            shape.Dim[0] = new TensorShapeProto.Types.Dimension { DimParam = BatchDimension };
        }
    }
}
