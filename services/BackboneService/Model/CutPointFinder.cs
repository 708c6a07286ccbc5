using Onnx;

namespace Graft.Backbone.Model;

/// <summary>An earlier cut of the backbone: a tensor from which the rest of the network (the <em>tail</em>) computes the
/// final features alone, so a head can fine-tune that tail starting from the backbone's weights.</summary>
/// <param name="Name">Name callers use, e.g. <c>last-block</c>.</param>
/// <param name="Tensor">The graph tensor read at this cut.</param>
public sealed record CutPoint(string Name, string Tensor);

/// <summary>Finds the earlier cut points of a cut backbone graph by its structure, not by node names: the
/// <see cref="LastBlock"/> cut is the input of the last residual block (the last <c>Add</c> of two computed tensors);
/// the <see cref="LastStage"/> cut is the input of the last stage (the convolutions that run at the last convolution's
/// resolution: ResNet's layer4, VGG's conv block 5). Both are <em>single-tensor cuts</em>: every node after them reads
/// nothing earlier, so the tail is a function of that one tensor.</summary>
public static class CutPointFinder
{
    /// <summary>Input of the last residual block (ResNet18: 512×7×7).</summary>
    public const string LastBlock = "last-block";

    /// <summary>Input of the last stage of convolutions (ResNet18: 256×14×14; VGG16: input of conv block 5, 512×14×14).</summary>
    public const string LastStage = "last-stage";

    private static readonly HashSet<string> Strided = ["Conv", "MaxPool", "AveragePool"];

    /// <summary>The cut points of <paramref name="graph"/> (already cut at <paramref name="finalTensor"/>): those the
    /// profile declares (name → tensor) if any, else those found by structure. Each is checked to be a single-tensor cut.</summary>
    /// <exception cref="InvalidOperationException">A declared tensor is not a single-tensor cut of the graph.</exception>
    public static IReadOnlyList<CutPoint> Find(GraphProto graph, string finalTensor, IReadOnlyDictionary<string, string>? declared = null)
    {
        var chain = SingleTensorCuts(graph, finalTensor);
        if (declared is { Count: > 0 })
        {
            var result = new List<CutPoint>();
            foreach (var (name, tensor) in declared)
            {
                if (!chain.Any(c => c.Tensor == tensor))
                {
                    throw new InvalidOperationException(
                        $"Cut point '{name}' names tensor '{tensor}', which is not a single-tensor cut of the graph (the layers after it also read other tensors, or it does not exist); " +
                        $"name one of: {string.Join(", ", chain.Take(12).Select(c => c.Tensor))}.");
                }
                result.Add(new CutPoint(name, tensor));
            }
            return result;
        }

        var found = new List<CutPoint>();
        var nodes = graph.Node;
        // Residual block: the last Add of two computed tensors; its block starts at the first single-tensor cut before it.
        var lastAdd = LastIndex(nodes, n => n.OpType == "Add" && n.Input.Count(i => IsComputed(graph, i)) == 2);
        if (lastAdd >= 0 && FirstCutBefore(chain, lastAdd) is { } block) found.Add(new CutPoint(LastBlock, block));

        // Stage: the convolutions whose output has the last convolution's total stride; it starts before the earliest.
        var strides = TotalStrides(graph);
        var lastConv = LastIndex(nodes, n => n.OpType == "Conv");
        if (lastConv >= 0)
        {
            var stageStride = strides[nodes[lastConv].Output[0]];
            var earliest = Enumerable.Range(0, nodes.Count).First(i => nodes[i].OpType == "Conv" && strides[nodes[i].Output[0]] == stageStride);
            if (FirstCutBefore(chain, earliest) is { } stage) found.Add(new CutPoint(LastStage, stage));
        }
        var inputs = graph.Input.Select(i => i.Name).ToHashSet();
        return found.Where(c => !inputs.Contains(c.Tensor)).ToList();
    }

    /// <summary>The nodes of the tail from <paramref name="cutTensor"/> to <paramref name="finalTensor"/>, in graph order.</summary>
    public static IReadOnlyList<NodeProto> TailNodes(GraphProto graph, string cutTensor, string finalTensor)
    {
        var needed = new HashSet<string> { finalTensor };
        var tail = new List<NodeProto>();
        for (var i = graph.Node.Count - 1; i >= 0; i--)
        {
            var node = graph.Node[i];
            if (!node.Output.Any(needed.Contains)) continue;
            tail.Add(node);
            foreach (var input in node.Input) if (input.Length > 0 && input != cutTensor) needed.Add(input);
        }
        tail.Reverse();
        return tail;
    }

    /// <summary>A standalone ONNX model of the tail: input <paramref name="cutTensor"/> [N, C, H, W], output
    /// <paramref name="finalTensor"/>, with exactly the initializers the tail reads.</summary>
    public static ModelProto TailModel(ModelProto cutModel, string cutTensor, string finalTensor, IReadOnlyList<long> cutShape)
    {
        var graph = cutModel.Graph;
        var nodes = TailNodes(graph, cutTensor, finalTensor);
        var read = nodes.SelectMany(n => n.Input).ToHashSet();
        var tail = new GraphProto { Name = $"{graph.Name}-tail-{cutTensor}" };
        tail.Node.AddRange(nodes.Select(n => n.Clone()));
        tail.Initializer.AddRange(graph.Initializer.Where(t => read.Contains(t.Name)).Select(t => t.Clone()));
        tail.Input.Add(FloatValue(cutTensor, cutShape));
        tail.Output.Add(FloatValue(finalTensor, null));
        var model = new ModelProto { IrVersion = cutModel.IrVersion, ProducerName = "graft-backbone", Graph = tail };
        model.OpsetImport.AddRange(cutModel.OpsetImport.Select(o => o.Clone()));
        return model;
    }

    private static ValueInfoProto FloatValue(string name, IReadOnlyList<long>? shapeWithoutBatch)
    {
        var type = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float };
        if (shapeWithoutBatch is not null)
        {
            type.Shape = new TensorShapeProto();
            type.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = GraphCutter.BatchDimension });
            type.Shape.Dim.AddRange(shapeWithoutBatch.Select(d => new TensorShapeProto.Types.Dimension { DimValue = d }));
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = type } };
    }

    /// <summary>Walks the graph backwards from the final tensor; whenever everything still needed is one tensor, that
    /// tensor is a single-tensor cut. Returns them nearest-first, each with the index of the earliest node of its tail.</summary>
    private static List<(string Tensor, int FirstTailNode)> SingleTensorCuts(GraphProto graph, string finalTensor)
    {
        var initializers = graph.Initializer.Select(t => t.Name).ToHashSet();
        var pending = new HashSet<string> { finalTensor };
        var chain = new List<(string, int)>();
        for (var i = graph.Node.Count - 1; i >= 0; i--)
        {
            var node = graph.Node[i];
            if (!node.Output.Any(pending.Contains)) continue;
            foreach (var output in node.Output) pending.Remove(output);
            foreach (var input in node.Input) if (input.Length > 0 && !initializers.Contains(input)) pending.Add(input);
            if (pending.Count == 1) chain.Add((pending.First(), i));
        }
        return chain;
    }

    private static string? FirstCutBefore(List<(string Tensor, int FirstTailNode)> chain, int nodeIndex) =>
        chain.Where(c => c.FirstTailNode <= nodeIndex).Select(c => c.Tensor).FirstOrDefault();

    /// <summary>Each tensor's total stride relative to the input (the product of the strides of the convolutions and
    /// pools before it): a coarse resolution that needs no shape inference.</summary>
    private static Dictionary<string, long> TotalStrides(GraphProto graph)
    {
        var strides = graph.Input.ToDictionary(i => i.Name, _ => 1L);
        foreach (var node in graph.Node)
        {
            var inStride = node.Input.Select(i => strides.GetValueOrDefault(i, 1L)).DefaultIfEmpty(1L).Max();
            var own = Strided.Contains(node.OpType)
                ? node.Attribute.FirstOrDefault(a => a.Name == "strides")?.Ints.DefaultIfEmpty(1L).Max() ?? 1L
                : 1L;
            foreach (var output in node.Output) strides[output] = inStride * own;
        }
        return strides;
    }

    private static bool IsComputed(GraphProto graph, string tensor) => graph.Initializer.All(t => t.Name != tensor);

    private static int LastIndex(IList<NodeProto> nodes, Func<NodeProto, bool> predicate)
    {
        for (var i = nodes.Count - 1; i >= 0; i--) if (predicate(nodes[i])) return i;
        return -1;
    }
}
