"""Reports: the paper's heatmap (Figure 5) and tables (Table 1) from a grid's results."""
