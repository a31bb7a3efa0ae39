"""``python -m jina5.teacher <overrides>``: pre-compute the teacher vectors of a training config."""

from jina5.teacher.precompute import main

if __name__ == "__main__":
    main()
