# Makefile rules for authban (see config): cargo builds the Rust code as a
# static library against this configured nginx tree, and the module (or the
# nginx binary, with --add-module) is linked from it by nginx's own rules.
#
# make cannot follow Rust sources and dependencies, so cargo is run every
# time (it decides what to rebuild). scripts/staticlib.sh adapts the library
# to the module list nginx generates (see there) and replaces the linked
# copy only when it changed, so an up-to-date module is not relinked.

cat << END                                                    >> $NGX_MAKEFILE

.AUTHBAN_CARGO:

$authban_lib:	.AUTHBAN_CARGO
	NGINX_SOURCE_DIR="$authban_src_abs" NGINX_BUILD_DIR="$authban_objs_abs" \\
	"$authban_cargo" rustc --release --lib --crate-type staticlib \\
		--manifest-path "$authban_addon_abs/Cargo.toml" \\
		--target-dir "$authban_objs_abs/authban"
	"$authban_addon_abs/scripts/staticlib.sh" \\
		"$authban_objs_abs/authban/release/libauthban.a" $authban_lib

END

if [ "$authban_link" = DYNAMIC ]; then
    cat << END                                                >> $NGX_MAKEFILE
$NGX_OBJS/ngx_http_authban_module$ngx_modext:	$authban_lib

END
fi
