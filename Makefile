# postern - the commands users type.  The build itself is Meson.
#   make            build (build/)
#   make run        install what is missing, build, start posternd
#   make test       install what is missing, build, run every test suite
#   make install PREFIX=/usr/local [DESTDIR=/tmp/stage]
#                   programs, library, man pages, the systemd unit
#                   (PREFIX/lib/systemd/system/posternd.service) and an
#                   example configuration (SYSCONFDIR/postern/)

PREFIX ?= /usr/local
BUILD  ?= build
ASAN   ?= build-asan
FUZZ   ?= build-fuzz
PYTHON ?= /usr/bin/python3

.PHONY: all deps deps-test run test install clean lint fuzz

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(BUILD)/build.ninja:
	@tools/deps.sh build
	meson setup $(BUILD) --prefix=$(PREFIX) -Dwerror=true

$(ASAN)/build.ninja:
	meson setup $(ASAN) -Dwerror=true -Dtests=enabled \
	    -Db_sanitize=address,undefined \
	    -Db_lundef=false -Dbuildtype=debug \
	    -Dc_args=-fno-sanitize-recover=all -Dc_link_args=-fno-sanitize-recover=all

deps:
	@tools/deps.sh build

deps-test:
	@tools/deps.sh test

run: deps all
	tools/demo.sh $(BUILD)

# The test libraries (cmocka, libgsasl) are optional when configuring, so
# that make run needs the build set alone; make test requires them.
test: deps-test $(BUILD)/build.ninja $(ASAN)/build.ninja
	meson configure $(BUILD) -Dtests=enabled
	ninja -C $(BUILD)
	ninja -C $(ASAN)
	$(PYTHON) tests/run.py --build $(BUILD) --asan $(ASAN) --fuzz-build $(FUZZ)

install: all
	meson configure $(BUILD) --prefix=$(PREFIX)
	meson install -C $(BUILD) $(if $(DESTDIR),--destdir $(DESTDIR))

lint:
	tools/lint

# libFuzzer (clang): every target for FUZZ_TIME seconds with its corpus;
# fuzz/README.md records the runs.
fuzz:
	fuzz/run.sh -b build-fuzz -t $(or $(FUZZ_TIME),60) -j $(or $(FUZZ_JOBS),1)

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
