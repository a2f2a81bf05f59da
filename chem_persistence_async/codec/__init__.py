"""What every backend does before and after its database: prepare appends, decode rows, mint ids."""
