"""`python -m producers.even`: the producer for even row ids (partition 0 of 2)."""

from producers import command

main = command(index=0, of=2)

if __name__ == "__main__":
    main()
