#!/usr/bin/env -S dotnet run
// Remakes samples/photos from the CC0 / public-domain photographs Debian ships in python3-skimage
// (apt-get download python3-skimage; dpkg-deb -x python3-skimage_*.deb DIR). Each is scaled so its shorter
// side is 256 px and saved as JPEG (quality 90): six into calibration/ (int8 calibration), six into held-out/
// (never calibrated on; the quantizer's accuracy tests and the bench compare int8 with fp32 on them). Run from the repository root:
//   dotnet run samples/make-photos.cs DIR/usr/lib/python3/dist-packages/skimage/data
#:property ManagePackageVersionsCentrally=false
#:package SkiaSharp@4.155.0
#:package SkiaSharp.NativeAssets.Linux.NoDependencies@4.155.0
#:property TreatWarningsAsErrors=false
#:property RuntimeIdentifier=linux-x64

using SkiaSharp;

(string File, string Set)[] files =
[
    ("astronaut.png", "held-out"), ("chelsea.png", "held-out"), ("coffee.png", "held-out"), ("rocket.jpg", "held-out"),
    ("hubble_deep_field.jpg", "held-out"), ("retina.jpg", "held-out"),
    ("camera.png", "calibration"), ("brick.png", "calibration"), ("grass.png", "calibration"), ("gravel.png", "calibration"),
    ("clock_motion.png", "calibration"), ("coins.png", "calibration"),
];
foreach (var (file, set) in files)
{
    var target = Path.Combine("samples", "photos", set);
    Directory.CreateDirectory(target);
    using var bitmap = SKBitmap.Decode(Path.Combine(args[0], file)) ?? throw new InvalidOperationException($"cannot decode {file}");
    var scale = 256f / Math.Min(bitmap.Width, bitmap.Height);
    var info = new SKImageInfo((int)Math.Round(bitmap.Width * scale), (int)Math.Round(bitmap.Height * scale), SKColorType.Rgba8888, SKAlphaType.Premul);
    using var resized = bitmap.Resize(info, new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear));
    using var data = resized.Encode(SKEncodedImageFormat.Jpeg, 90);
    File.WriteAllBytes(Path.Combine(target, Path.ChangeExtension(file, ".jpg")), data.ToArray());
    Console.WriteLine($"{file}: {bitmap.Width}x{bitmap.Height} -> {info.Width}x{info.Height}");
}
