// The .NET peer for the benchmark. Two commands, each writing one JSON object to --out:
//   pipeline --images <dir> --count <n> --out <file>   ML.NET's transfer-learning pipeline, images per second
//   train --train <features.bin> --test <features.bin> --out <file>   LbfgsMaximumEntropy and Sdca on given features
using System.Text.Json;
using Graft.Bench.MlNet;

var options = Args.Parse(args);
object result = options.Command switch
{
    "pipeline" => PipelineBaseline.Run(options.Required("images"), int.Parse(options.Required("count")),
        options.Optional("features-out")),
    "train" => TrainerBaseline.Run(options.Required("train"), options.Required("test")),
    _ => throw new ArgumentException($"Unknown command '{options.Command}'. Use 'pipeline' or 'train'."),
};
File.WriteAllText(options.Required("out"), JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
