using Graft.Heads.Registry;

namespace Graft.Heads.Tests.Unit;

public sealed class SafeTensorsTests
{
    [Fact]
    public void Tensors_survive_a_round_trip_bit_for_bit()
    {
        var tensors = new[]
        {
            new NamedTensor("layers.0.weight", [2, 3], [1, 2, 3, 4, 5, float.Epsilon]),
            new NamedTensor("layers.0.bias", [2], [-1.5f, 0]),
        };

        var back = SafeTensors.Deserialize(SafeTensors.Serialize(tensors));

        Assert.Equal(tensors.Select(t => t.Name), back.Select(t => t.Name));
        Assert.Equal(tensors[0].Data, back[0].Data);
        Assert.Equal(tensors[0].Shape, back[0].Shape);
        Assert.Equal(tensors[1].Data, back[1].Data);
    }

    [Fact]
    public void A_truncated_file_is_rejected()
    {
        var bytes = SafeTensors.Serialize([new NamedTensor("w", [4], [1, 2, 3, 4])]);

        var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Deserialize(bytes.AsSpan(0, bytes.Length - 3)));

        Assert.Contains("'w'", e.Message);
    }
}
