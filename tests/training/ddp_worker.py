"""Entry point of the processes spawned by test_ddp.py (kept apart so that they import little)."""
import os


def run(rank: int, world: int, port: int, work_dir: str, sets: list) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch
    torch.set_num_threads(1)
    from semask_models.checkpoint import save_weights
    from semask_models.config import load_config
    from semask_models.train import Trainer
    trainer = Trainer(load_config("synthetic-tiny", sets), work_dir=work_dir)
    assert trainer.info.world_size == world and trainer.info.rank == rank
    assert trainer.batch_per_rank * world == trainer.cfg["train"]["batch_size"]
    trainer.train()
    save_weights(os.path.join(work_dir, f"rank{rank}.safetensors"), trainer.model)
    trainer.close()
