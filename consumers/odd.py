"""`python -m consumers.odd`: the consumer for odd row ids (partition 1 of 2)."""

from consumers import command

main = command(index=1, of=2)

if __name__ == "__main__":
    main()
