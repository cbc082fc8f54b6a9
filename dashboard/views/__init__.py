"""Page bodies: each module has a `render()` that the matching script in `dashboard/pages/` calls."""
