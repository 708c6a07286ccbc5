Console.WriteLine("graft");
