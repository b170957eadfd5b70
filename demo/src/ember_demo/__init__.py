"""The main job, end to end, on the local control plane: an InferenceService under a replayed trace."""
