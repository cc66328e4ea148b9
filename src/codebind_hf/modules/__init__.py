"""Small model parts: projection heads and the logit scale (`heads`), the reconstruction decoder (`decoder`)."""
