using Graft.Heads;
using Graft.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults();
builder.AddHeads();

var app = builder.Build();
app.MapDefaultEndpoints();
app.MapHeads();
app.Run();
