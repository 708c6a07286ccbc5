using Graft.Backbone;
using Graft.Backbone.Quantization;
using Graft.ServiceDefaults;

// `Graft.BackboneService quantize ...` is the offline int8 quantizer (`graft backbone quantize`), not the service.
if (args is ["quantize", .. var quantizeArgs]) return QuantizeTool.Run(quantizeArgs);

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddBackbone();

var app = builder.Build();
app.MapDefaultEndpoints();
app.MapBackbone();
app.Run();
return 0;
