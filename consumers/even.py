"""`python -m consumers.even`: the consumer for even row ids (partition 0 of 2)."""

from consumers import command

main = command(index=0, of=2)

if __name__ == "__main__":
    main()
