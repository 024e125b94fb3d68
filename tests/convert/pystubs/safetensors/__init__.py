"""Stand-in for the `safetensors` package (not packaged in Debian 12) so that llama.cpp's
convert_lora_to_gguf.py can read adapter_model.safetensors in smelt's oracle tests.
smelt's own code; only safetensors.torch.load_file is provided."""
